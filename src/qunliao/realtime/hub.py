"""The hub: tails the global event stream and pushes each event to the local sockets allowed it.

One hub per process. It reads events in `pos` order (from its own commits directly, from the
database after a bus wake-up, and by polling at a bounded interval in case a wake-up was lost),
encodes each event once and hands the same text to every connection allowed it. Who is allowed
comes from the stream's kind (its audience's `Readers`, cached per stream until an event of a type
that changes the audience); the hub names no feature and no event type.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson

from qunliao.core.events import CURRENT, StoredEvent
from qunliao.core.streams import Readers, Registry
from qunliao.core.tokens import encode_sync_token
from qunliao.realtime.bus import Bus

log = logging.getLogger(__name__)


class EventSource(Protocol):
    async def events_after(self, pos: int, limit: int) -> list[StoredEvent]: ...

    async def max_position(self) -> int: ...


class _Nobody:
    """The readers of a stream of no registered kind (a newer process's, during an upgrade)."""

    users: tuple[str, ...] = ()

    def may_see(self, user_id: str, seq: int) -> bool:
        return False


NOBODY = _Nobody()


class Connection(Protocol):
    user_id: str
    device_id: str
    cursor: int
    live: bool

    def push(self, pos: int, data: bytes, stream_id: str) -> None: ...

    def push_state(self, data: bytes) -> None: ...

    def close_soon(self, code: int, reason: str) -> None: ...


def encode_event(registry: Registry, event: StoredEvent) -> bytes:
    """The frame for one event, encoded once and written as it is to every socket."""
    payload = registry.shape(event)
    payload["token"] = encode_sync_token(event.pos)
    return orjson.dumps(payload)


class Hub:
    def __init__(
        self,
        source: EventSource,
        bus: Bus,
        registry: Registry,
        *,
        poll_interval_s: float = 1.0,
        batch: int = 1000,
        cache_size: int = 20_000,
        now_ms: Callable[[], int] | None = None,
        on_lag: Callable[[float], None] | None = None,
    ) -> None:
        self._source = source
        self._bus = bus
        self._registry = registry
        self._now_ms = now_ms
        self._on_lag = on_lag
        self._poll_interval_s = poll_interval_s
        self._batch = batch
        self._cache_size = cache_size
        self.pos = 0
        self.connections: dict[str, set[Connection]] = {}
        self._readers: OrderedDict[str, Readers] = OrderedDict()
        # Bumped by every event that changes an audience: readers loaded before it (by a state
        # frame's task, meanwhile) are used once but not cached, or a removed member would be
        # pushed to again from a stale entry.
        self._audience_epoch = 0
        # Set when there may be something to deliver; `_waiter` is the hub task's pending wait.
        self._woken = False
        self._waiter: asyncio.Future[None] | None = None
        self._advanced = asyncio.Event()
        self._local: list[StoredEvent] = []
        # The highest position known to exist (own commits, bus wake-ups, sync callers): the
        # hub reads the database only when it is behind this, or when its poll timer fires.
        self._known = 0
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.polls_found = 0

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.pos = await self._source.max_position()
        await self._bus.start(self._on_bus)
        self._task = asyncio.create_task(self._run(), name="qunliao-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._bus.close()

    def encode(self, event: StoredEvent) -> bytes:
        return encode_event(self._registry, event)

    # ------------------------------------------------------------ inputs

    def committed(self, events: Sequence[StoredEvent]) -> None:
        """This process committed events: deliver them without a database round trip."""
        self._local.extend(events)
        self._wake()
        if events and self._bus.shared:  # a memory bus would only bring it back here
            self._publish({"k": "wake", "pos": events[-1].pos})

    def _publish(self, message: dict[str, Any]) -> None:
        payload = orjson.dumps(message)
        task = asyncio.get_running_loop().create_task(self._bus.publish(payload))
        task.add_done_callback(_log_failure)

    def broadcast_state(
        self, stream_id: str, frame: dict[str, Any], exclude_user: str | None
    ) -> None:
        """Ephemeral state (typing, read positions) for the stream's members on every process."""
        self._publish({"k": "state", "s": stream_id, "f": frame, "x": exclude_user})

    def revoke_devices(self, device_ids: Sequence[str]) -> None:
        self.close_devices(device_ids)
        self._publish({"k": "revoke", "d": list(device_ids)})

    async def announce_revoked(self, device_ids: Sequence[str]) -> None:
        """From a process that serves no sockets (the CLI): tell the servers on a shared bus
        that these sessions ended. Without one, their periodic check finds it in storage."""
        if not device_ids or not self._bus.shared:
            return
        await self._bus.start(lambda _payload: None)
        try:
            await self._bus.publish(orjson.dumps({"k": "revoke", "d": list(device_ids)}))
        finally:
            await self._bus.close()

    def _on_bus(self, payload: bytes) -> None:
        try:
            message = orjson.loads(payload)
            kind = message.get("k")
        except (orjson.JSONDecodeError, AttributeError):
            log.warning("bus: unreadable message dropped")
            return
        if kind == "wake":
            self._hint(int(message.get("pos", 0)))
        elif kind == "state":
            task = asyncio.get_running_loop().create_task(
                self._deliver_state(message["s"], message["f"], message.get("x"))
            )
            task.add_done_callback(_log_failure)
        elif kind == "revoke":
            self.close_devices(message.get("d", []))

    # ------------------------------------------------------------ connections

    def register(self, conn: Connection) -> None:
        self.connections.setdefault(conn.user_id, set()).add(conn)

    def unregister(self, conn: Connection) -> None:
        conns = self.connections.get(conn.user_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.connections[conn.user_id]

    def connected_devices(self) -> set[str]:
        """The devices with a socket open in this process (they count as in use)."""
        return {conn.device_id for conns in self.connections.values() for conn in conns}

    @property
    def bus_healthy(self) -> bool:
        return self._bus.healthy

    @property
    def connection_count(self) -> int:
        return sum(len(c) for c in self.connections.values())

    def close_devices(self, device_ids: Sequence[str]) -> None:
        """Close this process's sockets of these devices (4401), telling no other process."""
        wanted = set(device_ids)
        for conns in list(self.connections.values()):
            for conn in list(conns):
                if conn.device_id in wanted:
                    conn.close_soon(4401, "session revoked")

    async def wait_past(self, pos: int, timeout_s: float) -> None:
        """Return once the hub has moved past `pos`, or after the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.pos <= pos:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._hint(pos)  # the caller has seen the database at `pos`: look now
            waiter = self._advanced
            try:
                await asyncio.wait_for(waiter.wait(), remaining)
            except TimeoutError:
                return

    # ------------------------------------------------------------ the loop

    def _hint(self, pos: int) -> None:
        if pos > self._known:
            self._known = pos
        if pos > self.pos:
            self._wake()

    def _wake(self) -> None:
        self._woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self) -> bool:
        """Wait for a wake-up or the poll interval; True when woken. (A future and a timer:
        asyncio.wait_for would wrap each wait in a task of its own.)"""
        if not self._woken:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(self._poll_interval_s, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        woken, self._woken = self._woken, False
        return woken

    async def _run(self) -> None:
        while True:
            poll = not await self._sleep()  # a wake-up may have been lost: look anyway
            try:
                await self._catch_up(poll)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("hub: delivery failed; retrying")
                await asyncio.sleep(0.2)
                self._wake()

    async def _catch_up(self, poll: bool) -> None:
        while True:
            local, self._local = self._local, []
            local = [e for e in local if e.pos > self.pos]
            if local:
                self._known = max(self._known, local[-1].pos)
                if local[0].pos == self.pos + 1 and _contiguous(local):
                    await self._deliver(local)
                    continue
            if not poll and self._known <= self.pos:
                return
            poll = False
            found = await self._source.events_after(self.pos, self._batch)
            if not found:
                return
            self.polls_found += 1
            await self._deliver(found)
            if len(found) == self._batch:
                poll = True

    async def _deliver(self, events: Sequence[StoredEvent]) -> None:
        registry = self._registry
        for event in events:
            if event.pos <= self.pos:
                continue
            if event.type in registry.access_changes:
                registry.changed_access(event)  # e.g. cached permissions of other processes
            if event.type in registry.audience_changes:
                self._readers.pop(event.stream_id, None)
                self._audience_epoch += 1
            if self.connections:
                # A coroutine per event only when the readers are not cached.
                readers = self._cached_readers(event.stream_id)
                if readers is None:
                    readers = await self._load_readers(event.stream_id)
                self._fan_out(event, readers)
            self.pos = event.pos
        advanced, self._advanced = self._advanced, asyncio.Event()
        advanced.set()
        if self._on_lag is not None and self._now_ms is not None and events:
            self._on_lag(max(0.0, (self._now_ms() - events[-1].sent_at) / 1000))

    def _fan_out(self, event: StoredEvent, readers: Readers) -> None:
        data: bytes | None = None
        seq = event.seq
        allowed = self._registry.event_filter(event.stream_id)  # None: no per-event rules
        for user_id, conns in self._local_readers(readers):
            if not readers.may_see(user_id, seq) or (
                allowed is not None and not allowed(user_id, event)
            ):
                continue
            if data is None:
                data = encode_event(self._registry, event)
            for conn in list(conns):
                conn.push(event.pos, data, event.stream_id)
                self.delivered += 1

    def _local_readers(self, readers: Readers) -> list[tuple[str, set[Connection]]]:
        """Users with sockets here who may be readers, walking whichever side is smaller (a 1:1
        chat on a busy gateway, or a 10,000-member group on a quiet one). An audience too large
        to list (`users` None) is asked about each local user instead."""
        users = readers.users
        if users is not None and len(users) <= len(self.connections):
            found = ((u, self.connections.get(u)) for u in users)
            return [(u, c) for u, c in found if c]
        if users is None:
            return list(self.connections.items())
        return [(u, c) for u, c in self.connections.items() if u in users]

    def _cached_readers(self, stream_id: str) -> Readers | None:
        cached = self._readers.get(stream_id)
        if cached is not None:
            self._readers.move_to_end(stream_id)
        return cached

    async def _load_readers(self, stream_id: str) -> Readers:
        cached = self._cached_readers(stream_id)
        if cached is not None:
            return cached
        kind = self._registry.kind_of(stream_id)
        epoch = self._audience_epoch
        if kind is None:
            log.warning("hub: stream %s is of no registered kind; delivered to nobody", stream_id)
            loaded: Readers = NOBODY
        else:
            loaded = await kind.audience.readers(stream_id)
            if epoch != self._audience_epoch:
                return loaded  # an audience changed while this loaded: do not keep it
        self._readers[stream_id] = loaded
        if len(self._readers) > self._cache_size:
            self._readers.popitem(last=False)
        return loaded

    async def _deliver_state(
        self, stream_id: str, frame: dict[str, Any], exclude_user: str | None
    ) -> None:
        if not self.connections:
            return
        readers = await self._load_readers(stream_id)
        data = orjson.dumps(frame)
        for user_id, conns in self._local_readers(readers):
            if user_id == exclude_user or not readers.may_see(user_id, CURRENT):
                continue
            for conn in list(conns):
                conn.push_state(data)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _contiguous(events: Sequence[StoredEvent]) -> bool:
    return all(b.pos == a.pos + 1 for a, b in itertools.pairwise(events))


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("hub: background task failed: %s", task.exception())
