"""The one-process bus: a publish is delivered straight back to this process."""

from __future__ import annotations

from qunliao.realtime.bus import OnMessage


class MemoryBus:
    def __init__(self) -> None:
        self._on_message: OnMessage | None = None

    @property
    def shared(self) -> bool:
        return False

    @property
    def healthy(self) -> bool:
        return True

    @property
    def description(self) -> str:
        return "memory"

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message

    async def publish(self, payload: bytes) -> None:
        if self._on_message is not None:
            self._on_message(payload)

    async def close(self) -> None:
        self._on_message = None
