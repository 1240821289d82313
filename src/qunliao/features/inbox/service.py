"""The inbox stream kind: one stream per user (`i_…`), read by that user alone.

The smallest stream kind, and the worked example in docs/architecture.md ("Adding a feature"):
its audience needs no table — the owner is in the stream id — and its streams are created on
the first delivery, so registering an account writes nothing here. Other features register
their event types into this kind (contacts: friend requests; conversations: group invitations)
and deliver through `do_deliver`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.core.clock import Clock
from qunliao.core.events import EventBody, NewEvent, Span, StoredEvent
from qunliao.core.ids import inbox_stream_id
from qunliao.core.streams import OneReader, StreamKind
from qunliao.storage import eventlog
from qunliao.storage.db import Tx

KIND = "inbox"
OnCommitted = Callable[[Sequence[StoredEvent]], None]


def inbox_owner(stream_id: str) -> str:
    return "u_" + stream_id.removeprefix("i_")


class InboxService:
    def __init__(self, clock: Clock, log: eventlog.EventLog, on_committed: OnCommitted) -> None:
        self._clock = clock
        self._log = log
        self._on_committed = on_committed

    def stream_kind(self) -> StreamKind:
        return StreamKind(KIND, "i", self)

    # The audience: the owner, found from the stream id.
    async def spans(self, conn: AsyncConnection, user_id: str) -> list[Span]:
        return [Span(inbox_stream_id(user_id), 0)]

    async def readers(self, stream_id: str) -> OneReader:
        return OneReader(inbox_owner(stream_id))

    async def do_deliver(
        self, tx: Tx, user_ids: Sequence[str], body: EventBody, *, sender_id: str | None = None
    ) -> list[StoredEvent]:
        """Append one event to each user's inbox inside `tx`; pushed after the commit."""
        now = self._clock.now_ms()
        inboxes = [inbox_stream_id(u) for u in user_ids]
        # Under the position lock: two deliveries to a new inbox cannot both create it.
        await eventlog.lock_position(tx.conn)
        known = await eventlog.stream_info(tx.conn, inboxes)
        for stream_id in dict.fromkeys(inboxes):
            if stream_id not in known:
                await eventlog.create_stream(tx.conn, stream_id, KIND, now)
        new = [NewEvent.of(i, body, sender_id=sender_id) for i in inboxes]
        stored = await self._log.append(tx, new, now)
        tx.on_commit(lambda: self._on_committed(stored))
        return stored
