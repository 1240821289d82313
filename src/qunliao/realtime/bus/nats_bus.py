"""NATS core-subject bus (nats-py). No JetStream: the database is the truth."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import nats

from qunliao.realtime.bus import CHANNEL, OnMessage

log = logging.getLogger(__name__)


class NatsBus:
    def __init__(self, url: str, *, retry_s: float = 0.5) -> None:
        self._url = url
        self._retry_s = retry_s
        self._nc: Any = None
        self._task: asyncio.Task[None] | None = None
        self._on_message: OnMessage | None = None

    @property
    def shared(self) -> bool:
        return True

    @property
    def healthy(self) -> bool:
        return bool(self._nc is not None and self._nc.is_connected)

    @property
    def description(self) -> str:
        return "nats"

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        self._task = asyncio.create_task(self._connect_loop(), name="qunliao-nats-bus")

    async def _connect_loop(self) -> None:
        while self._nc is None:
            try:
                self._nc = await nats.connect(
                    self._url,
                    connect_timeout=2,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=self._retry_s,
                    allow_reconnect=True,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect,
                )
                await self._nc.subscribe(CHANNEL, cb=self._deliver)
                log.info("bus: nats subscribed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("bus: nats unavailable (%s); polling meanwhile", exc)
                self._nc = None
                await asyncio.sleep(self._retry_s)

    async def _deliver(self, msg: Any) -> None:
        if self._on_message is not None:
            self._on_message(bytes(msg.data))

    async def _on_error(self, exc: Exception) -> None:
        log.debug("bus: nats error %s", exc)

    async def _on_disconnect(self) -> None:
        log.warning("bus: nats disconnected; falling back to polling")

    async def _on_reconnect(self) -> None:
        log.info("bus: nats reconnected")

    async def publish(self, payload: bytes) -> None:
        if not self.healthy:
            return
        try:
            await self._nc.publish(CHANNEL, payload)
        except Exception as exc:  # a lost wake-up costs latency only
            log.warning("bus: nats publish failed (%s)", exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._nc is not None:
            try:
                await asyncio.wait_for(self._nc.close(), 2)
            except Exception:  # closing a broken connection may fail; nothing to keep
                pass
            self._nc = None
