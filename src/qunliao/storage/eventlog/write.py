"""Writing to the log outside the hot path: streams, ordinary appends, payload changes."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.core.events import NewEvent, StoredEvent
from qunliao.storage.db import Tx
from qunliao.storage.eventlog.append import Hooks, append_postgres, append_sqlite
from qunliao.storage.eventlog.read import READ_COLUMNS, values_to_event
from qunliao.storage.eventlog.tables import events, stream_position, streams


async def lock_position(conn: AsyncConnection) -> int:
    """Take the global append lock (held until commit) and return the last assigned position.

    Writers that must see each other's effects (two recalls of one message, two adds of one
    member) take it first: the second waits for the first to commit, then finds its work."""
    query = select(stream_position.c.pos).where(stream_position.c.id == 1)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    pos = (await conn.execute(query)).scalar_one_or_none()
    if pos is None:
        await conn.execute(stream_position.insert().values(id=1, pos=0))
        return 0
    return int(pos)


class EventLog:
    """Appends for ordinary write transactions, with the registry's `after_append` hooks."""

    def __init__(self, hooks: Hooks) -> None:
        self._hooks = hooks  # the registry's own mapping: types registered later count too

    async def append(self, tx: Tx, new: Sequence[NewEvent], now_ms: int) -> list[StoredEvent]:
        """Append events in order inside `tx`, through the same append as the group commit."""
        if not new:
            return []
        # Through SQLAlchemy first: on PostgreSQL this begins the transaction that the driver
        # calls below join, and takes the position lock in it.
        pos = await lock_position(tx.conn)
        driver: Any = (await tx.conn.get_raw_connection()).driver_connection
        if tx.conn.dialect.name == "sqlite":
            # aiosqlite runs callables in its connection thread; the sqlite3 module joins the
            # transaction SQLAlchemy's statements opened (or opens it for the insert).
            stored: list[StoredEvent] = await driver._execute(
                append_sqlite, driver._conn, list(new), now_ms, self._hooks, pos
            )
            return stored
        return await append_postgres(driver, new, now_ms, self._hooks, pos)


async def create_stream(conn: AsyncConnection, stream_id: str, kind: str, now_ms: int) -> None:
    await conn.execute(
        streams.insert().values(stream_id=stream_id, kind=kind, last_seq=0, last_activity_at=now_ms)
    )


@dataclass(frozen=True, slots=True)
class StreamInfo:
    kind: str
    last_seq: int
    last_activity_at: int


async def stream_info(conn: AsyncConnection, stream_ids: Sequence[str]) -> dict[str, StreamInfo]:
    found: dict[str, StreamInfo] = {}
    for start in range(0, len(stream_ids), 500):
        rows = await conn.execute(
            select(streams.c.stream_id, streams.c.kind, streams.c.last_seq,
                   streams.c.last_activity_at)
            .where(streams.c.stream_id.in_(stream_ids[start : start + 500]))
        )  # fmt: skip
        found.update((r[0], StreamInfo(r[1], int(r[2]), int(r[3]))) for r in rows)
    return found


async def set_payload(conn: AsyncConnection, pos: int, payload: dict[str, Any]) -> bool:
    """Replace an event's payload (an edit); False if it was redacted meanwhile."""
    result = await conn.execute(
        update(events)
        .where(events.c.pos == pos, events.c.redacted_at.is_(None))
        .values(payload=orjson.dumps(payload).decode())
    )
    return bool(result.rowcount)


async def redact(
    conn: AsyncConnection, stream_id: str, ref_id: str, at: int, *, keep: Collection[str]
) -> None:
    """Erase the content of every event about an object (a recall): of each payload only the
    `keep` keys stay, the rest is gone from storage."""
    rows = await conn.execute(
        select(*READ_COLUMNS).where(events.c.ref_id == ref_id, events.c.stream_id == stream_id)
    )
    for event in [values_to_event(r) for r in rows]:
        kept = {k: v for k, v in event.payload.items() if k in keep}
        await conn.execute(
            update(events)
            .where(events.c.pos == event.pos)
            .values(payload=orjson.dumps(kept).decode() if kept else None, redacted_at=at)
        )


async def bump_positions(conn: AsyncConnection, by: int) -> int:
    """Move the global position and every stream's seq counter forward by `by`.

    After restoring a backup, clients hold tokens and seqs from the lost future; moving past
    them makes new events reach those clients instead of being taken for ones already seen.
    """
    pos = await lock_position(conn)
    await conn.execute(
        update(stream_position).where(stream_position.c.id == 1).values(pos=pos + by)
    )
    await conn.execute(update(streams).values(last_seq=streams.c.last_seq + by))
    return pos + by
