"""Stream kinds: how a feature plugs its timeline into the event log, sync, the hub and the gateway.

A feature registers a `StreamKind`: the prefix of its stream ids, its event types (each with the
one function that shapes it for clients), its `Audience` (who may read a stream, resolved by the
feature) and, optionally, WebSocket frame handlers and a sync filter. The event log, sync, the
hub and the gateway iterate the registry; none of them names a feature.

Audiences are never loaded whole for a large stream: the hub asks a stream's `Readers` about the
users with a socket in *its* process (`may_see`), and lists `users` only when the audience says
it is small enough to hold (the members of a group); sync asks the audience for the `spans` of
one user.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from qunliao.core.events import Span, StoredEvent
from qunliao.core.principal import Principal

if TYPE_CHECKING:
    import sqlite3

    from sqlalchemy.ext.asyncio import AsyncConnection

Shape = Callable[[StoredEvent], dict[str, Any]]
EventFilter = Callable[[str, StoredEvent], bool]
Frame = dict[str, Any]


def shape_plain(event: StoredEvent) -> dict[str, Any]:
    """The default client JSON: where the event is, then its payload, then when (`at`). The
    envelope is written again after the payload: no payload key can replace it."""
    out: dict[str, Any] = {"type": event.type, "conversation_id": event.stream_id, "seq": event.seq}
    out.update(event.payload)
    out["type"], out["conversation_id"], out["seq"] = event.type, event.stream_id, event.seq
    out.setdefault("at", event.sent_at)
    return out


class AppendHook(Protocol):
    """Rows a feature writes in the same transaction as events of one type (after they are
    appended, with their seqs known): once for each database's append."""

    def sqlite(self, conn: sqlite3.Connection, events: Sequence[StoredEvent]) -> None: ...

    async def postgres(self, conn: Any, events: Sequence[StoredEvent]) -> None: ...


@dataclass(frozen=True)
class EventType:
    name: str
    shape: Shape = shape_plain
    body: type | None = None  # the typed class its payload is made from, if it has one
    # The hub reloads the stream's readers after one (a join, a leave).
    changes_audience: bool = False
    # The kind's `on_change` hears of one from every process (a role, a mute, a title).
    changes_access: bool = False
    after_append: AppendHook | None = None


class Readers(Protocol):
    """Who may read one stream, as the hub holds it between membership changes."""

    # Everyone who may read it, when the audience is small enough to hold; None when it is
    # not (everyone signed in, 100,000 followers): then the hub asks about its local users.
    @property
    def users(self) -> Collection[str] | None: ...

    def may_see(self, user_id: str, seq: int) -> bool:
        """Whether the user may see the event at `seq` (CURRENT: is a reader now)."""
        ...


class Audience(Protocol):
    async def spans(self, conn: AsyncConnection, user_id: str) -> Sequence[Span]:
        """The streams of this kind (and the parts of them) that the user's sync follows."""
        ...

    async def readers(self, stream_id: str) -> Readers: ...


class SpanReaders:
    """Readers by seq span: user → (first, last or None). For members of a group."""

    __slots__ = ("_spans",)

    def __init__(self, spans: Mapping[str, tuple[int, int | None]]) -> None:
        self._spans = spans

    @property
    def users(self) -> Collection[str]:
        return self._spans.keys()

    def may_see(self, user_id: str, seq: int) -> bool:
        span = self._spans.get(user_id)
        return span is not None and span[0] <= seq and (span[1] is None or seq <= span[1])


class OneReader:
    """A stream only its owner reads (an inbox)."""

    __slots__ = ("users",)

    def __init__(self, user_id: str) -> None:
        self.users: Collection[str] = (user_id,)

    def may_see(self, user_id: str, seq: int) -> bool:
        return user_id in self.users


class EveryoneSignedIn:
    """A public stream: every signed-in user may read it (never listed)."""

    users = None

    def may_see(self, user_id: str, seq: int) -> bool:
        return True


# A WebSocket frame of a registered `type`: the caller, the frame → a reply frame or None (the
# gateway adds the frame's `client_txn_id` to a reply, and answers an ApiError with an error frame).
FrameCall = Callable[[Principal, Frame], Awaitable[Frame | None]]
# The hot path: queue the work and return True (`reply` gets the result later, which
# `result_frame(client_txn_id, result)` turns into the answer), or False when the work needs
# storage (then `call` runs).
FrameNow = Callable[[Principal, Frame, Callable[[Any], None]], bool]


@dataclass(frozen=True)
class FrameHandler:
    call: FrameCall
    now: FrameNow | None = None
    result_frame: Callable[[Any, Any], Frame] | None = None


@dataclass
class StreamKind:
    name: str  # as stored in `streams.kind`
    prefix: str  # its stream ids are `{prefix}_…`
    audience: Audience
    event_types: list[EventType] = field(default_factory=list)
    frames: dict[str, FrameHandler] = field(default_factory=dict)
    # Hears the stream id of every `changes_access` event, from whichever process wrote it.
    on_change: Callable[[str], None] | None = None
    # Per-event rules inside a reader's spans (user, event → may see it): a moments comment only
    # mutual friends see. Sync, the catch-up and the hub's live pushes all apply it.
    event_filter: EventFilter | None = None


class Registry:
    """The stream kinds of one app, built in app.py: there are no module-level registries."""

    def __init__(self) -> None:
        self.kinds: dict[str, StreamKind] = {}
        self._by_prefix: dict[str, StreamKind] = {}
        self._types: dict[str, EventType] = {}
        self._kind_of_type: dict[str, StreamKind] = {}
        self.frames: dict[str, FrameHandler] = {}
        self._filters: dict[str, EventFilter] = {}  # by stream id prefix
        self.append_hooks: dict[str, AppendHook] = {}
        self.audience_changes: frozenset[str] = frozenset()
        self.access_changes: frozenset[str] = frozenset()

    def add_kind(self, kind: StreamKind) -> StreamKind:
        if kind.name in self.kinds or kind.prefix in self._by_prefix:
            raise ValueError(f"stream kind {kind.name!r} ({kind.prefix}_) is registered twice")
        self.kinds[kind.name] = kind
        self._by_prefix[kind.prefix] = kind
        if kind.event_filter is not None:
            self._filters[kind.prefix] = kind.event_filter
        types, kind.event_types = kind.event_types, []
        self.add_types(kind.name, *types)
        for frame_type, handler in kind.frames.items():
            self.add_frame(frame_type, handler)
        return kind

    def add_types(self, kind_name: str, *types: EventType) -> None:
        """Event types for a kind (also from another feature: messages in conversations)."""
        kind = self.kinds[kind_name]
        for event_type in types:
            if event_type.name in self._types:
                raise ValueError(f"event type {event_type.name!r} is registered twice")
            self._types[event_type.name] = event_type
            self._kind_of_type[event_type.name] = kind
            kind.event_types.append(event_type)
            if event_type.after_append is not None:
                self.append_hooks[event_type.name] = event_type.after_append
        self.audience_changes = frozenset(t for t, e in self._types.items() if e.changes_audience)
        self.access_changes = frozenset(t for t, e in self._types.items() if e.changes_access)

    def add_frame(self, frame_type: str, handler: FrameHandler) -> None:
        if frame_type in self.frames or frame_type in ("ping", "resume"):
            raise ValueError(f"frame type {frame_type!r} is registered twice")
        self.frames[frame_type] = handler

    def kind_of(self, stream_id: str) -> StreamKind | None:
        return self._by_prefix.get(stream_id.partition("_")[0])

    def event_type(self, name: str) -> EventType | None:
        return self._types.get(name)

    def shape(self, event: StoredEvent) -> dict[str, Any]:
        """The event as clients see it: the one encoder, by type (unknown types: plainly)."""
        event_type = self._types.get(event.type)
        return shape_plain(event) if event_type is None else event_type.shape(event)

    def changed_access(self, event: StoredEvent) -> None:
        kind = self._kind_of_type.get(event.type)
        if kind is not None and kind.on_change is not None:
            kind.on_change(event.stream_id)

    async def spans(self, conn: AsyncConnection, user_id: str) -> list[Span]:
        found: list[Span] = []
        for kind in self.kinds.values():
            found.extend(await kind.audience.spans(conn, user_id))
        return found

    def event_filter(self, stream_id: str) -> EventFilter | None:
        """The per-event rule of the stream's kind, if it has one (none registered: None)."""
        if not self._filters:
            return None
        return self._filters.get(stream_id.partition("_")[0])

    def filter_for(self, user_id: str, events: list[StoredEvent]) -> list[StoredEvent]:
        """Drop the events a per-event rule hides from the user (none registered: as it is)."""
        if not self._filters:
            return events
        shown = []
        for event in events:
            allowed = self.event_filter(event.stream_id)
            if allowed is None or allowed(user_id, event):
                shown.append(event)
        return shown
