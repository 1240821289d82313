"""The bus carries wake-ups between gateway processes, never the only copy of anything.

A lost or duplicated bus message costs latency, never data: the hub also polls the database at a
bounded interval and deduplicates by position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

OnMessage = Callable[[bytes], None]
CHANNEL = "qunliao.wake"


class Bus(Protocol):
    @property
    def healthy(self) -> bool: ...

    @property
    def shared(self) -> bool:
        """Whether other processes hear what this one publishes (not so for memory://)."""
        ...

    @property
    def description(self) -> str: ...

    async def start(self, on_message: OnMessage) -> None: ...

    async def publish(self, payload: bytes) -> None: ...

    async def close(self) -> None: ...


def make_bus(url: str) -> Bus:
    if url.startswith("memory://"):
        from qunliao.realtime.bus.memory import MemoryBus

        return MemoryBus()
    if url.startswith(("redis://", "rediss://")):
        from qunliao.realtime.bus.redis_bus import RedisBus

        return RedisBus(url)
    if url.startswith("nats://"):
        from qunliao.realtime.bus.nats_bus import NatsBus

        return NatsBus(url)
    raise ValueError(f"unsupported bus url {url!r}")
