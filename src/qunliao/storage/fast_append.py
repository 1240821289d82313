"""The group-commit batch on the raw driver connection.

SQLAlchemy stays everywhere else; on the hot path a batch costs one hop to the SQLite thread
(instead of one per statement, each fighting the event loop for the GIL) or a handful of
PostgreSQL round trips with array parameters, and no SQL compilation per message.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from qunliao.storage import spine
from qunliao.storage.db import Database

TxnKey = tuple[str, str]

_COLUMNS = ", ".join(c.name for c in spine.EVENT_COLUMNS)
_EVENT_FIELDS = [c.name for c in spine.EVENT_COLUMNS]


@dataclass
class BatchResult:
    existing: dict[TxnKey, spine.StoredEvent]  # sends stored before, by (device, txn id)
    fresh: list[int]  # indexes of the batch's events stored now, in order
    stored: list[spine.StoredEvent]  # those events as stored, same order


class BatchWriter(Protocol):
    async def commit(self, events: Sequence[spine.NewEvent], now_ms: int) -> BatchResult: ...


def txn_key(event: spine.NewEvent) -> TxnKey | None:
    if event.device_id and event.client_txn_id:
        return (event.device_id, event.client_txn_id)
    return None


def select_fresh(events: Sequence[spine.NewEvent], existing: dict[TxnKey, Any]) -> list[int]:
    """Events to store: not stored before, and only the first of repeats inside the batch."""
    seen: set[TxnKey] = set()
    fresh = []
    for index, event in enumerate(events):
        key = txn_key(event)
        if key is not None:
            if key in existing or key in seen:
                continue
            seen.add(key)
        fresh.append(index)
    return fresh


def read_moves(stored: Sequence[spine.StoredEvent]) -> list[tuple[int, str, str]]:
    """(seq, stream_id, user_id): sending moves the sender's read position to the message."""
    newest: dict[tuple[str, str], int] = {}
    for event in stored:
        if event.sender_id:
            key = (event.stream_id, event.sender_id)
            newest[key] = max(newest.get(key, 0), event.seq)
    return [(seq, stream, user) for (stream, user), seq in newest.items()]


# ---------------------------------------------------------------- SQLite


def _sqlite_batch(
    conn: sqlite3.Connection, events: Sequence[spine.NewEvent], now_ms: int
) -> BatchResult:
    """Runs in the connection's own thread: the whole batch, one transaction.

    Optimistic first: a retried send is rare, so the batch is inserted without looking its
    transaction ids up, and the unique index on (device, txn id) catches a repeat. Then the
    transaction is rolled back and the batch goes again, looking every id up.
    """
    try:
        return _sqlite_batch_once(conn, events, now_ms, look_up=False)
    except sqlite3.IntegrityError as exc:
        if "client_txn_id" not in str(exc):
            raise
    return _sqlite_batch_once(conn, events, now_ms, look_up=True)


def _sqlite_batch_once(
    conn: sqlite3.Connection, events: Sequence[spine.NewEvent], now_ms: int, *, look_up: bool
) -> BatchResult:
    conn.execute("BEGIN IMMEDIATE")
    try:
        pos = conn.execute("SELECT pos FROM stream_position WHERE id = 1").fetchone()[0]
        existing: dict[TxnKey, spine.StoredEvent] = {}
        if look_up:
            # One index probe per key: a row-value IN makes SQLite scan the table, and two IN
            # lists would probe every device × txn combination.
            lookup = f"SELECT {_COLUMNS} FROM events WHERE device_id = ? AND client_txn_id = ?"
            for key in {k for k in map(txn_key, events) if k is not None}:
                row = conn.execute(lookup, key).fetchone()
                if row is not None:
                    existing[key] = spine.values_to_event(row)
        fresh = select_fresh(events, existing)
        new = [events[i] for i in fresh]
        stored: list[spine.StoredEvent] = []
        if new:
            stream_ids = sorted({e.stream_id for e in new})
            marks = ", ".join("?" for _ in stream_ids)
            last_seq = dict(
                conn.execute(
                    f"SELECT stream_id, last_seq FROM streams WHERE stream_id IN ({marks})",
                    stream_ids,
                ).fetchall()
            )
            plan = spine.plan_append(new, last_seq, pos, now_ms)
            conn.executemany(
                f"INSERT INTO events ({', '.join(spine.INSERT_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in spine.INSERT_COLUMNS)})",
                plan.rows,
            )
            conn.executemany(
                "UPDATE streams SET last_seq = ?, last_activity_at = ?, "
                "last_message_seq = COALESCE(?, last_message_seq) WHERE stream_id = ?",
                [(q, now_ms, m, s) for s, q, m in plan.stream_updates],
            )
            conn.execute("UPDATE stream_position SET pos = ? WHERE id = 1", (plan.pos,))
            conn.executemany(
                "UPDATE stream_members SET read_seq = ? "
                "WHERE stream_id = ? AND user_id = ? AND read_seq < ?",
                [(seq, s, u, seq) for seq, s, u in read_moves(plan.stored)],
            )
            stored = plan.stored
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return BatchResult(existing, fresh, stored)


class SqliteBatchWriter:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def commit(self, events: Sequence[spine.NewEvent], now_ms: int) -> BatchResult:
        async with self._db.batch_connection() as driver:  # the aiosqlite connection
            # aiosqlite runs callables in its connection thread, as SQLAlchemy's adapter does.
            result: BatchResult = await driver._execute(
                _sqlite_batch, driver._conn, list(events), now_ms
            )
            return result


# ---------------------------------------------------------------- PostgreSQL

_PG_TYPES = (
    "bigint", "text", "bigint", "text", "text", "text", "text", "text", "text", "text", "text",
    "text", "bigint", "bigint", "bigint", "text",
)  # fmt: skip


class PostgresBatchWriter:
    def __init__(self, db: Database) -> None:
        self._db = db
        columns = ", ".join(spine.INSERT_COLUMNS)
        arrays = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_PG_TYPES))
        self._insert = f"INSERT INTO events ({columns}) SELECT * FROM unnest({arrays})"

    async def commit(self, events: Sequence[spine.NewEvent], now_ms: int) -> BatchResult:
        """Optimistic first, as on SQLite: the batch goes in without looking its transaction ids
        up, and the unique index catches a retry (then the batch runs again, looking)."""
        async with self._db.batch_connection() as pg:  # an asyncpg.Connection
            try:
                async with pg.transaction():
                    return await self._commit(pg, events, now_ms, look_up=False)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "ux_events_txn":
                    raise
            async with pg.transaction():
                return await self._commit(pg, events, now_ms, look_up=True)

    async def _commit(
        self, pg: Any, events: Sequence[spine.NewEvent], now_ms: int, *, look_up: bool
    ) -> BatchResult:
        pos = await pg.fetchval("SELECT pos FROM stream_position WHERE id = 1 FOR UPDATE")
        keys = list({k for k in map(txn_key, events) if k is not None}) if look_up else []
        existing: dict[TxnKey, spine.StoredEvent] = {}
        if keys:
            # A generic plan cannot see how many keys the arrays hold: with this look-up on
            # every batch, once PostgreSQL switched to one after a run of large batches, each
            # later commit took ~50 ms. It is the rare path now; plan it each time.
            await pg.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            columns = ", ".join(f"e.{c}" for c in _EVENT_FIELDS)
            rows = await pg.fetch(
                f"SELECT {columns}, e.device_id, e.client_txn_id "
                "FROM unnest($1::text[], $2::text[]) AS k(device_id, client_txn_id) "
                "JOIN events AS e ON e.device_id = k.device_id "
                "AND e.client_txn_id = k.client_txn_id",
                [k[0] for k in keys],
                [k[1] for k in keys],
            )
            for row in rows:
                values = tuple(row)
                existing[(values[-2], values[-1])] = spine.values_to_event(values[:-2])
        fresh = select_fresh(events, existing)
        new = [events[i] for i in fresh]
        if not new:
            return BatchResult(existing, fresh, [])
        stream_ids = sorted({e.stream_id for e in new})
        rows = await pg.fetch(
            "SELECT stream_id, last_seq FROM streams WHERE stream_id = ANY($1::text[])", stream_ids
        )
        plan = spine.plan_append(new, {r[0]: int(r[1]) for r in rows}, int(pos), now_ms)
        await pg.execute(self._insert, *map(list, zip(*plan.rows, strict=True)))
        await pg.execute(
            "UPDATE streams AS s SET last_seq = u.last_seq, last_activity_at = $4, "
            "last_message_seq = COALESCE(u.message_seq, s.last_message_seq) "
            "FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(stream_id, last_seq, "
            "message_seq) WHERE s.stream_id = u.stream_id",
            [u[0] for u in plan.stream_updates],
            [u[1] for u in plan.stream_updates],
            [u[2] for u in plan.stream_updates],
            now_ms,
        )
        await pg.execute("UPDATE stream_position SET pos = $1 WHERE id = 1", plan.pos)
        moves = read_moves(plan.stored)
        if moves:
            await pg.execute(
                "UPDATE stream_members AS m SET read_seq = u.seq "
                "FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(seq, stream_id, user_id) "
                "WHERE m.stream_id = u.stream_id AND m.user_id = u.user_id AND m.read_seq < u.seq",
                [m[0] for m in moves],
                [m[1] for m in moves],
                [m[2] for m in moves],
            )
        return BatchResult(existing, fresh, plan.stored)


def batch_writer(db: Database) -> BatchWriter:
    return SqliteBatchWriter(db) if db.is_sqlite else PostgresBatchWriter(db)
