"""Reading the log: a user's spans in position order, the whole log after a position, and the
few stream-scoped look-ups that features build their queries from."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import orjson
from sqlalchemy import Select, and_, func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.core.events import Span, StoredEvent
from qunliao.storage.eventlog.tables import events, stream_position

READ_NAMES = (
    "pos", "stream_id", "seq", "type", "sent_at", "sender_id", "ref_id", "payload", "redacted_at",
)  # fmt: skip
READ_COLUMNS = [events.c[name] for name in READ_NAMES]

# Streams per statement when reading several streams: SQLite allows 500 arms in a compound
# SELECT; each arm is one stream's index range.
STREAMS_PER_QUERY = 200


def values_to_event(v: Sequence[Any]) -> StoredEvent:
    """From a row selected as exactly READ_COLUMNS, by position (the read paths' hot loop)."""
    raw = v[7]
    payload = {} if raw is None else orjson.loads(raw)
    return StoredEvent(v[0], v[1], v[2], v[3], v[4], v[5], v[6], payload, v[8])


async def max_position(conn: AsyncConnection) -> int:
    pos = (
        await conn.execute(select(stream_position.c.pos).where(stream_position.c.id == 1))
    ).scalar_one_or_none()
    return 0 if pos is None else int(pos)


async def read(
    conn: AsyncConnection, spans: Sequence[Span], after_pos: int, limit: int, upto: int
) -> tuple[list[StoredEvent], int]:
    """Events in the spans with after_pos < pos ≤ upto, in pos order, and where to go on.

    `upto` is the global position read *before* the spans were resolved. The second value is
    the last event's pos when the page is full, else `upto` (nothing visible lies below it).

    Each span is read as its own `(stream_id, pos)` index range, stopped at `limit` rows, and
    the ranges are merged. (One join sorted by pos made the database read and sort every event
    after `after_pos` for every page: quadratic over a long catch-up.)
    """
    found: list[StoredEvent] = []
    for start in range(0, len(spans), STREAMS_PER_QUERY):
        arms = []
        for stream_id, first, last in spans[start : start + STREAMS_PER_QUERY]:
            arm = select(*READ_COLUMNS).where(
                events.c.stream_id == stream_id,
                events.c.pos > after_pos,
                events.c.pos <= upto,
            )
            if first > 0:
                arm = arm.where(events.c.seq >= first)
            if last is not None:
                arm = arm.where(events.c.seq <= last)
            arms.append(arm.order_by(events.c.pos).limit(limit))
        rows = await conn.execute(_merged(arms, events.c.pos, limit))
        page = [values_to_event(r) for r in rows]
        found = page if not found else sorted(found + page, key=_by_pos)[:limit]
    if len(found) == limit:
        return found, found[-1].pos
    return found, max(upto, after_pos)


def _merged(arms: list[Select[Any]], order: Any, limit: int) -> Select[Any]:
    """One statement of several ordered, limited arms (SQLite wants each as a subquery)."""
    wrapped = [arm.subquery().select() for arm in arms]
    merged = union_all(*wrapped).subquery() if len(wrapped) > 1 else wrapped[0].subquery()
    return select(merged).order_by(merged.c[order.name]).limit(limit)


def _by_pos(event: StoredEvent) -> int:
    return event.pos


async def events_after(conn: AsyncConnection, after_pos: int, limit: int) -> list[StoredEvent]:
    """The whole log after a position (the real-time hub tails it)."""
    rows = await conn.execute(
        select(*READ_COLUMNS).where(events.c.pos > after_pos).order_by(events.c.pos).limit(limit)
    )
    return [values_to_event(r) for r in rows]


async def stream_events(
    conn: AsyncConnection,
    stream_id: str,
    *,
    types: Collection[str] | None = None,
    min_seq: int = 0,
    max_seq: int | None = None,
    before_seq: int | None = None,
    limit: int,
) -> list[StoredEvent]:
    """One stream's events in a seq range, newest first."""
    query = select(*READ_COLUMNS).where(events.c.stream_id == stream_id, events.c.seq >= min_seq)
    if types is not None:
        query = query.where(events.c.type.in_(list(types)))
    if before_seq is not None:
        query = query.where(events.c.seq < before_seq)
    if max_seq is not None:
        query = query.where(events.c.seq <= max_seq)
    rows = await conn.execute(query.order_by(events.c.seq.desc()).limit(limit))
    return [values_to_event(r) for r in rows]


async def find(
    conn: AsyncConnection, stream_id: str, *, ref_id: str, type_: str
) -> StoredEvent | None:
    """The first event of a type about an object, in one stream."""
    row = (
        await conn.execute(
            select(*READ_COLUMNS)
            .where(
                events.c.ref_id == ref_id, events.c.stream_id == stream_id, events.c.type == type_
            )
            .order_by(events.c.pos)
            .limit(1)
        )
    ).first()
    return None if row is None else values_to_event(row)


async def at_seq(conn: AsyncConnection, stream_id: str, seq: int) -> StoredEvent | None:
    row = (
        await conn.execute(
            select(*READ_COLUMNS).where(events.c.stream_id == stream_id, events.c.seq == seq)
        )
    ).first()
    return None if row is None else values_to_event(row)


async def latest_of_type(
    conn: AsyncConnection, spans: Sequence[Span], type_: str
) -> dict[str, StoredEvent]:
    """For each span, its newest event of one type (a conversation's last message)."""
    found: dict[str, StoredEvent] = {}
    for start in range(0, len(spans), STREAMS_PER_QUERY):
        arms = []
        for stream_id, first, last in spans[start : start + STREAMS_PER_QUERY]:
            arm = select(*READ_COLUMNS).where(
                events.c.stream_id == stream_id, events.c.seq >= first, events.c.type == type_
            )
            if last is not None:
                arm = arm.where(events.c.seq <= last)
            arms.append(arm.order_by(events.c.seq.desc()).limit(1))
        rows = await conn.execute(_merged(arms, events.c.pos, len(arms)))
        found.update((e.stream_id, e) for e in map(values_to_event, rows))
    return found


async def count_after(
    conn: AsyncConnection, positions: Sequence[tuple[str, int]], *, type_: str, not_sender: str
) -> dict[str, int]:
    """Per stream, the events of a type after a seq, by others and not redacted (unread)."""
    found: dict[str, int] = {}
    for start in range(0, len(positions), STREAMS_PER_QUERY):
        chunk = positions[start : start + STREAMS_PER_QUERY]
        rows = await conn.execute(
            select(events.c.stream_id, func.count())
            .where(
                or_(*(and_(events.c.stream_id == s, events.c.seq > q) for s, q in chunk)),
                events.c.type == type_,
                events.c.redacted_at.is_(None),
                events.c.sender_id != not_sender,
            )
            .group_by(events.c.stream_id)
        )
        found.update((r[0], int(r[1])) for r in rows)
    return found
