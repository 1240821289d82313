"""Per-key token buckets (in memory, per process)."""

from __future__ import annotations

from dataclasses import dataclass

from qunliao.core.clock import Clock
from qunliao.core.errors import ApiError


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, clock: Clock, rate_per_s: float, burst: float, max_keys: int = 100_000):
        self._clock = clock
        self._rate = rate_per_s
        self._burst = burst
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key: str, cost: float = 1.0) -> None:
        """Take `cost` tokens for `key` or raise `rate_limited` with the wait in seconds."""
        if self._rate <= 0:
            return
        now = self._clock.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._buckets.clear()
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens < cost:
            wait = (cost - bucket.tokens) / self._rate
            raise ApiError("rate_limited", "too many requests, slow down", retry_after=wait)
        bucket.tokens -= cost
