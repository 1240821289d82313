"""The hub on its own: a fake event source, a memory bus, fake sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson

from qunliao.core.events import Span, StoredEvent
from qunliao.core.streams import (
    EventType,
    EveryoneSignedIn,
    Readers,
    Registry,
    SpanReaders,
    StreamKind,
)
from qunliao.realtime.bus.memory import MemoryBus
from qunliao.realtime.hub import Hub


class _Members:
    """A conversation-like audience: alice and bob, from the start."""

    def __init__(self) -> None:
        self.loads = 0

    async def spans(self, conn: Any, user_id: str) -> Sequence[Span]:
        return []

    async def readers(self, stream_id: str) -> Readers:
        self.loads += 1
        return SpanReaders({"u_alice": (0, None), "u_bob": (0, None)})


class _Public:
    async def spans(self, conn: Any, user_id: str) -> Sequence[Span]:
        return []

    async def readers(self, stream_id: str) -> Readers:
        return EveryoneSignedIn()


def _registry(members: _Members | None = None) -> Registry:
    registry = Registry()
    registry.add_kind(
        StreamKind("chat", "c", members or _Members(),
                   [EventType("note"), EventType("joined", changes_audience=True)])
    )  # fmt: skip
    registry.add_kind(StreamKind("square", "p", _Public(), [EventType("post")]))
    return registry


class _Source:
    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.reads = 0

    async def events_after(self, pos: int, limit: int) -> list[StoredEvent]:
        self.reads += 1
        return [e for e in self.events if e.pos > pos][:limit]

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


def _event(pos: int, text: str, stream_id: str = "c_1", type_: str = "note") -> StoredEvent:
    return StoredEvent(pos, stream_id, pos, type_, 0, "u_alice", None, {"text": text})


class _CountingBus(MemoryBus):
    def __init__(self) -> None:
        super().__init__()
        self.published = 0

    async def publish(self, payload: bytes) -> None:
        self.published += 1
        await super().publish(payload)


async def test_own_commits_reach_local_sockets_without_a_read_or_a_bus_round_trip() -> None:
    source, bus = _Source(), _CountingBus()
    hub = Hub(source, bus, _registry(), poll_interval_s=30)
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
    hub = Hub(source, MemoryBus(), _registry(), poll_interval_s=0.05)
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


async def test_readers_come_from_the_kind_and_reload_after_an_audience_change() -> None:
    members = _Members()
    source = _Source()
    hub = Hub(source, MemoryBus(), _registry(members), poll_interval_s=30)
    await hub.start()
    try:
        alice, carol = _Socket("u_alice"), _Socket("u_carol")
        hub.register(alice)
        hub.register(carol)
        events = [_event(1, "a"), _event(2, "b"), _event(3, "", type_="joined"), _event(4, "c")]
        source.events = events
        hub.committed(events)
        await hub.wait_past(3, 2.0)
        assert len(alice.got) == 4 and carol.got == []  # carol is not in the audience
        assert members.loads == 2  # once, then again after the audience changed
    finally:
        await hub.stop()


async def test_a_public_kind_reaches_every_local_user_without_listing_its_audience() -> None:
    source = _Source()
    hub = Hub(source, MemoryBus(), _registry(), poll_interval_s=30)
    await hub.start()
    try:
        sockets = [_Socket(f"u_{i}") for i in range(5)]
        for sock in sockets:
            hub.register(sock)
        events = [_event(1, "公告", stream_id="p_square", type_="post")]
        source.events = events
        hub.committed(events)
        await hub.wait_past(0, 2.0)
        assert all(len(sock.got) == 1 for sock in sockets)
    finally:
        await hub.stop()


async def test_a_stream_of_no_registered_kind_reaches_nobody() -> None:
    source = _Source()
    hub = Hub(source, MemoryBus(), _registry(), poll_interval_s=30)
    await hub.start()
    try:
        bob = _Socket("u_bob")
        hub.register(bob)
        events = [_event(1, "from a newer version", stream_id="z_1"), _event(2, "hi")]
        source.events = events
        hub.committed(events)
        await hub.wait_past(1, 2.0)
        assert len(bob.got) == 1 and hub.pos == 2
    finally:
        await hub.stop()


class _SlowMembers(_Members):
    """Readers whose first load is held until released: a state frame's load in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.members = {"u_alice": (0, None), "u_bob": (0, None)}

    async def readers(self, stream_id: str) -> Readers:
        self.loads += 1
        snapshot = dict(self.members)
        if self.loads == 1:
            await self.release.wait()
        return SpanReaders(snapshot)


async def test_readers_loaded_before_an_audience_change_are_not_kept() -> None:
    """A typing frame loads the readers; meanwhile bob is removed and the hub moves on. The
    stale load must not land in the cache, or bob would get every later message."""
    members = _SlowMembers()
    source = _Source()
    hub = Hub(source, MemoryBus(), _registry(members), poll_interval_s=30)
    await hub.start()
    try:
        bob = _Socket("u_bob")
        hub.register(bob)
        typing = asyncio.create_task(
            hub._deliver_state("c_1", {"type": "typing", "user_id": "u_alice"}, None)
        )
        await asyncio.sleep(0.05)  # the state's load is in flight with bob still in
        members.members = {"u_alice": (0, None), "u_bob": (0, 1)}  # bob left at seq 1
        source.events = [_event(1, "", type_="joined")]
        hub.committed(source.events)
        await hub.wait_past(0, 2.0)
        members.release.set()
        await typing
        source.events.append(_event(2, "after bob left"))
        hub.committed(source.events[1:])
        await hub.wait_past(1, 2.0)
        assert not any(b"after bob left" in data for data in bob.got)
    finally:
        await hub.stop()


async def test_an_event_filter_holds_for_live_pushes_as_for_sync() -> None:
    registry = _registry()
    registry.add_kind(
        StreamKind("moments", "mo", _Public(), [EventType("comment")],
                   event_filter=lambda user, event: user != "u_bob")
    )  # fmt: skip
    source = _Source()
    hub = Hub(source, MemoryBus(), registry, poll_interval_s=30)
    await hub.start()
    try:
        alice, bob = _Socket("u_alice"), _Socket("u_bob")
        hub.register(alice)
        hub.register(bob)
        events = [_event(1, "朋友圈", stream_id="mo_1", type_="comment")]
        source.events = events
        hub.committed(events)
        await hub.wait_past(0, 2.0)
        assert len(alice.got) == 1 and bob.got == []
        assert registry.filter_for("u_bob", events) == []
        assert registry.filter_for("u_alice", events) == events
    finally:
        await hub.stop()


def test_a_payload_cannot_replace_the_envelope() -> None:
    event = StoredEvent(3, "c_1", 7, "note", 5, None, None, {"type": "x", "seq": 99, "a": 1})
    assert _registry().shape(event) == {
        "type": "note", "conversation_id": "c_1", "seq": 7, "a": 1, "at": 5,
    }  # fmt: skip


class _SharedBus(MemoryBus):
    """A bus that other processes would hear: records what is published while started."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.started = self.closed = 0

    @property
    def shared(self) -> bool:
        return True

    async def start(self, on_message: Any) -> None:
        self.started += 1
        await super().start(on_message)

    async def publish(self, payload: bytes) -> None:
        assert self.started > self.closed, "publish on a bus that is not started"
        self.sent.append(payload)

    async def close(self) -> None:
        self.closed += 1
        await super().close()


async def test_the_cli_announces_ended_sessions_on_a_shared_bus_only() -> None:
    shared = _SharedBus()
    hub = Hub(_Source(), shared, _registry())
    await hub.announce_revoked([])
    assert shared.started == 0  # nothing to say: no connection to the bus at all
    await hub.announce_revoked(["d_1", "d_2"])
    assert [orjson.loads(p) for p in shared.sent] == [{"k": "revoke", "d": ["d_1", "d_2"]}]
    assert shared.started == shared.closed == 1

    local = MemoryBus()
    await Hub(_Source(), local, _registry()).announce_revoked(["d_1"])  # nobody else hears it
