"""The hub on its own: a fake event source, a memory bus, fake sockets."""

from __future__ import annotations

import asyncio

from qunliao.realtime.bus.memory import MemoryBus
from qunliao.realtime.hub import Hub, Visibility
from qunliao.storage.spine import MESSAGE, StoredEvent


class _Source:
    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.reads = 0

    async def events_after(self, pos: int, limit: int) -> list[StoredEvent]:
        self.reads += 1
        return [e for e in self.events if e.pos > pos][:limit]

    async def visibility(self, stream_id: str) -> Visibility:
        return {"u_alice": (0, None), "u_bob": (0, None)}

    async def max_position(self) -> int:
        return 0


class _Socket:
    def __init__(self, user_id: str) -> None:
        self.user_id, self.device_id, self.cursor, self.live = user_id, "v_" + user_id, 0, True
        self.got: list[bytes] = []

    def push(self, pos: int, data: bytes, stream_id: str) -> None:
        self.cursor = pos
        self.got.append(data)

    def push_state(self, data: bytes) -> None:
        self.got.append(data)

    def close_soon(self, code: int, reason: str) -> None:
        self.live = False


def _event(pos: int, text: str) -> StoredEvent:
    return StoredEvent(
        pos=pos, stream_id="c_1", seq=pos, type=MESSAGE, sent_at=0, sender_id="u_alice",
        message_id=f"m_{pos}", msg_type="text", body={"text": text}, reply_to=None,
        mentions=None, edited_at=None, recalled_at=None, data={},
    )  # fmt: skip


class _CountingBus(MemoryBus):
    def __init__(self) -> None:
        super().__init__()
        self.published = 0

    async def publish(self, payload: bytes) -> None:
        self.published += 1
        await super().publish(payload)


async def test_own_commits_reach_local_sockets_without_a_read_or_a_bus_round_trip() -> None:
    source, bus = _Source(), _CountingBus()
    hub = Hub(source, bus, poll_interval_s=30)
    await hub.start()
    try:
        bob = _Socket("u_bob")
        hub.register(bob)
        events = [_event(1, "你好"), _event(2, "hello")]
        source.events = events
        hub.committed(events)
        await hub.wait_past(1, 2.0)
        assert len(bob.got) == 2 and b"\\u4f60" not in bob.got[0]  # UTF-8, not escapes
        assert "你好".encode() in bob.got[0]
        assert source.reads == 0  # delivered from memory
        assert bus.published == 0  # nobody else listens on a memory bus
    finally:
        await hub.stop()


async def test_the_poll_timer_finds_what_no_one_announced() -> None:
    source = _Source()
    hub = Hub(source, MemoryBus(), poll_interval_s=0.05)
    await hub.start()
    try:
        bob = _Socket("u_bob")
        hub.register(bob)
        source.events = [_event(1, "另一个进程写的")]  # committed elsewhere, wake-up lost
        for _ in range(100):
            if bob.got:
                break
            await asyncio.sleep(0.02)
        assert len(bob.got) == 1 and hub.pos == 1
    finally:
        await hub.stop()
