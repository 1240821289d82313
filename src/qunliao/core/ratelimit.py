"""Per-key token buckets.

`RateLimiter` keeps them in this process's memory: the per-user send/read limit on the hot path,
and the fallback of the shared login and registration limits. It holds at most `max_keys` buckets
and forgets the least recently used first (a flood of new keys evicts idle ones, never the bucket
of a client that is hammering right now). `Buckets` is the async face of the same thing for limits
that may live outside the process (realtime/shared_limits.py keeps them in Redis).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from qunliao.core.clock import Clock
from qunliao.core.errors import ApiError


class Taken(NamedTuple):
    allowed: bool
    before: float  # tokens in the bucket just before this take, after refilling
    retry_after: float  # seconds until the bucket holds the cost (0 when allowed)


def rate_limited(retry_after: float, message: str = "too many requests, slow down") -> ApiError:
    return ApiError("rate_limited", message, retry_after=retry_after)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, clock: Clock, rate_per_s: float, burst: float, max_keys: int = 100_000):
        self._clock = clock
        self.rate = rate_per_s
        self.burst = burst
        self._max_keys = max(1, max_keys)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def check(self, key: str, cost: float = 1.0) -> None:
        """Take `cost` tokens for `key` or raise `rate_limited` with the wait in seconds."""
        rate = self.rate
        if rate <= 0:
            return
        # `_bucket` written out: this runs for every message sent or read.
        now = self._clock.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._new(key, now)
        else:
            self._buckets.move_to_end(key)
            tokens = bucket.tokens + (now - bucket.updated) * rate
            bucket.tokens = tokens if tokens < self.burst else self.burst
            bucket.updated = now
        if bucket.tokens < cost:
            raise rate_limited((cost - bucket.tokens) / rate)
        bucket.tokens -= cost

    def take(self, key: str, cost: float = 1.0) -> Taken:
        """Like `check`, but says what happened instead of raising."""
        if self.rate <= 0:
            return Taken(True, self.burst, 0.0)
        bucket = self._bucket(key)
        before = bucket.tokens
        if before < cost:
            return Taken(False, before, (cost - before) / self.rate)
        bucket.tokens -= cost
        return Taken(True, before, 0.0)

    def give(self, key: str, cost: float = 1.0) -> None:
        """Put back tokens taken for an attempt that turned out not to count."""
        if self.rate > 0 and key in self._buckets:
            bucket = self._bucket(key)
            bucket.tokens = min(self.burst, bucket.tokens + cost)

    def _bucket(self, key: str) -> _Bucket:
        now = self._clock.monotonic()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            return self._new(key, now)
        buckets.move_to_end(key)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        return bucket

    def _new(self, key: str, now: float) -> _Bucket:
        if len(self._buckets) >= self._max_keys:
            self._buckets.popitem(last=False)  # the least recently used
        bucket = self._buckets[key] = _Bucket(self.burst, now)
        return bucket


class Buckets(Protocol):
    """Token buckets behind an await: in this process, or shared by every gateway."""

    async def take(self, key: str, cost: float = 1.0) -> Taken: ...

    async def give(self, key: str, cost: float = 1.0) -> None: ...


class LocalBuckets:
    """`Buckets` in this process's memory (memory:// and nats:// buses, and tests)."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def take(self, key: str, cost: float = 1.0) -> Taken:
        return self.limiter.take(key, cost)

    async def give(self, key: str, cost: float = 1.0) -> None:
        self.limiter.give(key, cost)
