"""Token buckets shared by every gateway process through Redis (login and registration limits).

With a Redis bus every gateway and worker counts into the same buckets, so N processes behind a
load balancer do not give an attacker N times the limit. Each take is one Lua script (atomic in
Redis, one round trip); the time comes from the caller's clock, so processes on hosts with
synchronised clocks agree and tests can move time. A key expires once its bucket would be full
again, so Redis holds only the buckets of recent failures.

Redis being down must never turn a login into a 500 or let limits vanish: every call has a short
timeout, and after a failure this process uses its own in-memory buckets (`RateLimiter`, the same
numbers) for a few seconds before trying Redis again, with one warning a minute in the log.
Only login and registration (a few requests a second) come here; the per-user send limit stays
in memory, off the hot path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from qunliao.core.clock import Clock
from qunliao.core.ratelimit import Buckets, LocalBuckets, RateLimiter, Taken

log = logging.getLogger(__name__)

# KEYS[1] the bucket; ARGV: now (s), rate (tokens/s), burst, cost, "take"|"give", ttl (ms).
# Answers {allowed (0/1), tokens before the take as a string} (Lua numbers would be truncated).
_SCRIPT = """
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local saved = redis.call("HMGET", KEYS[1], "tokens", "updated")
local tokens = tonumber(saved[1]) or burst
local updated = tonumber(saved[2]) or now
if now > updated then
  tokens = math.min(burst, tokens + (now - updated) * rate)
  updated = now
end
local before = tokens
local allowed = 1
if ARGV[5] == "give" then
  tokens = math.min(burst, tokens + cost)
elseif tokens >= cost then
  tokens = tokens - cost
else
  allowed = 0
end
if tokens >= burst then
  redis.call("DEL", KEYS[1])
else
  redis.call("HSET", KEYS[1], "tokens", tostring(tokens), "updated", tostring(updated))
  redis.call("PEXPIRE", KEYS[1], tonumber(ARGV[6]))
end
return {allowed, tostring(before)}
"""


class SharedLimits:
    """One Redis connection for every shared limit of this process, and its health."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        prefix: str = "qunliao:limits:",
        timeout_s: float = 0.5,
        pause_s: float = 5.0,
        warn_every_s: float = 60.0,
    ) -> None:
        self._clock = clock
        self.prefix = prefix
        self._timeout_s = timeout_s
        self._pause_s = pause_s
        self._warn_every_s = warn_every_s
        # One quick retry: a pooled connection to a Redis that restarted fails once.
        self._client = aioredis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self._script = self._client.register_script(_SCRIPT)
        self._down = False
        self._down_until = float("-inf")
        self._warned_at = float("-inf")
        self.failures = 0

    def buckets(self, name: str, rate_per_s: float, burst: float) -> RedisBuckets:
        fallback = RateLimiter(self._clock, rate_per_s, burst)
        return RedisBuckets(self, self.prefix + name + ":", rate_per_s, burst, fallback)

    async def close(self) -> None:
        await self._client.aclose()

    async def run(self, key: str, args: list[Any]) -> tuple[bool, float] | None:
        """The script's answer (allowed, tokens before), or None when Redis is (recently)
        unreachable or answers something unexpected."""
        now = self._clock.monotonic()
        if now < self._down_until:
            return None
        try:
            answer = await asyncio.wait_for(
                self._script(keys=[key], args=args), timeout=self._timeout_s * 2
            )
            allowed, before = int(answer[0]) == 1, float(answer[1])
        except Exception as exc:  # any Redis trouble: fall back, never fail the request
            self.failures += 1
            self._down = True
            self._down_until = now + self._pause_s
            if now - self._warned_at >= self._warn_every_s:
                self._warned_at = now
                log.warning(
                    "rate limits: redis unreachable (%s); using this process's own limits",
                    str(exc) or type(exc).__name__,
                )
            return None
        if self._down:
            self._down = False
            log.info("rate limits: redis reachable again; limits are shared")
        return allowed, before

    @property
    def healthy(self) -> bool:
        return not self._down

    def now_s(self) -> float:
        return self._clock.now_ms() / 1000


class RedisBuckets:
    """`Buckets` kept in Redis under `prefix`; this process's own `fallback` while it is down."""

    def __init__(
        self,
        shared: SharedLimits,
        prefix: str,
        rate_per_s: float,
        burst: float,
        fallback: RateLimiter,
    ) -> None:
        self._shared = shared
        self._prefix = prefix
        self._rate = rate_per_s
        self._burst = burst
        self._ttl_ms = int(burst / rate_per_s * 1000) + 1000 if rate_per_s > 0 else 0
        self.fallback = LocalBuckets(fallback)

    async def take(self, key: str, cost: float = 1.0) -> Taken:
        if self._rate <= 0:
            return Taken(True, self._burst, 0.0)
        answer = await self._shared.run(self._prefix + key, self._args(cost, "take"))
        if answer is None:
            return await self.fallback.take(key, cost)
        allowed, before = answer
        if allowed:
            return Taken(True, before, 0.0)
        return Taken(False, before, (cost - before) / self._rate)

    async def give(self, key: str, cost: float = 1.0) -> None:
        if self._rate <= 0:
            return
        if await self._shared.run(self._prefix + key, self._args(cost, "give")) is None:
            await self.fallback.give(key, cost)

    def _args(self, cost: float, action: str) -> list[Any]:
        return [repr(self._shared.now_s()), repr(self._rate), repr(self._burst), repr(cost),
                action, self._ttl_ms]  # fmt: skip


def make_buckets(
    shared: SharedLimits | None, clock: Clock, name: str, rate_per_s: float, burst: float
) -> Buckets:
    """Redis-shared buckets when there is a Redis, else this process's own."""
    if shared is None:
        return LocalBuckets(RateLimiter(clock, rate_per_s, burst))
    return shared.buckets(name, rate_per_s, burst)


def shared_limits_for(bus_url: str, clock: Clock) -> SharedLimits | None:
    """Shared limits live in the bus's Redis when the bus is Redis. memory:// is one process;
    with nats:// each process keeps its own (NATS core is plain pub/sub, with nothing to count
    in), so N processes allow up to N times the limit."""
    if bus_url.startswith(("redis://", "rediss://")):
        return SharedLimits(bus_url, clock)
    return None
