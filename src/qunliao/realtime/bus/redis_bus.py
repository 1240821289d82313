"""Redis pub/sub bus (redis-py asyncio). Reconnects by itself; while down, gateways poll."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from qunliao.realtime.bus import CHANNEL, OnMessage

log = logging.getLogger(__name__)


class RedisBus:
    def __init__(self, url: str, *, retry_s: float = 0.5) -> None:
        self._url = url
        self._retry_s = retry_s
        self._client: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._healthy = False
        self.failures = 0

    @property
    def shared(self) -> bool:
        return True

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def description(self) -> str:
        return "redis"

    async def start(self, on_message: OnMessage) -> None:
        # A pooled connection to a Redis that has since restarted fails once; retry it on a
        # fresh connection instead of losing the wake-up.
        self._client = aioredis.from_url(
            self._url,
            socket_connect_timeout=2,
            socket_timeout=None,
            health_check_interval=5,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        self._task = asyncio.create_task(self._listen(on_message), name="qunliao-redis-bus")

    async def _listen(self, on_message: OnMessage) -> None:
        assert self._client is not None
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                if not self._healthy:
                    log.info("bus: redis subscribed")
                self._healthy = True
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None and message.get("type") == "message":
                        on_message(bytes(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._healthy:
                    log.warning("bus: redis lost (%s); falling back to polling", exc)
                self._healthy = False
                self.failures += 1
                await asyncio.sleep(self._retry_s)
            finally:
                try:
                    await asyncio.wait_for(pubsub.aclose(), 2)  # type: ignore[no-untyped-call]
                except Exception:  # closing a broken connection may fail; nothing to keep
                    pass

    async def publish(self, payload: bytes) -> None:
        if self._client is None:
            return
        try:
            await asyncio.wait_for(self._client.publish(CHANNEL, payload), 1.0)
        except Exception as exc:  # a lost wake-up costs latency only (the hub also polls)
            # Health is the subscriber's to report: it alone knows when the bus is back.
            log.warning("bus: redis publish failed (%s)", exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._client is not None:
            await self._client.aclose()
        self._healthy = False
