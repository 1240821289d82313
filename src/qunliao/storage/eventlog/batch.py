"""The group-commit batch: many sends, one transaction, on the driver connection.

SQLAlchemy stays everywhere else; on the hot path a batch costs one hop to the SQLite thread
(instead of one per statement, each fighting the event loop for the GIL) or a handful of
PostgreSQL round trips with array parameters, and no SQL compilation per message. The append
itself is the log's one append (`append.py`); what the batch adds is idempotency: a send that
repeats a (device, client_txn_id) already stored is answered with the stored event instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from qunliao.core.events import NewEvent, StoredEvent
from qunliao.storage.db import Database
from qunliao.storage.eventlog.append import (
    Hooks,
    append_postgres,
    append_sqlite,
    postgres_position,
    sqlite_position,
)
from qunliao.storage.eventlog.read import READ_NAMES, values_to_event

TxnKey = tuple[str, str]
_READ = ", ".join(READ_NAMES)


@dataclass
class BatchResult:
    existing: dict[TxnKey, StoredEvent]  # sends stored before, by (device, txn id)
    fresh: list[int]  # indexes of the batch's events stored now, in order
    stored: list[StoredEvent]  # those events as stored, same order


class BatchWriter(Protocol):
    async def commit(self, events: Sequence[NewEvent], now_ms: int) -> BatchResult: ...


def txn_key(event: NewEvent) -> TxnKey | None:
    if event.device_id and event.client_txn_id:
        return (event.device_id, event.client_txn_id)
    return None


def select_fresh(events: Sequence[NewEvent], existing: dict[TxnKey, Any]) -> list[int]:
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


# ---------------------------------------------------------------- SQLite


def _sqlite_batch(
    conn: sqlite3.Connection, events: Sequence[NewEvent], now_ms: int, hooks: Hooks
) -> BatchResult:
    """Runs in the connection's own thread: the whole batch, one transaction.

    Optimistic first: a retried send is rare, so the batch is inserted without looking its
    transaction ids up, and the unique index on (device, txn id) catches a repeat. Then the
    transaction is rolled back and the batch goes again, looking every id up.
    """
    try:
        return _sqlite_batch_once(conn, events, now_ms, hooks, look_up=False)
    except sqlite3.IntegrityError as exc:
        if "client_txn_id" not in str(exc):
            raise
    return _sqlite_batch_once(conn, events, now_ms, hooks, look_up=True)


def _sqlite_batch_once(
    conn: sqlite3.Connection, events: Sequence[NewEvent], now_ms: int, hooks: Hooks, *,
    look_up: bool,
) -> BatchResult:  # fmt: skip
    conn.execute("BEGIN IMMEDIATE")
    try:
        pos = sqlite_position(conn)
        existing: dict[TxnKey, StoredEvent] = {}
        if look_up:
            # One index probe per key: a row-value IN makes SQLite scan the table, and two IN
            # lists would probe every device × txn combination.
            lookup = f"SELECT {_READ} FROM events WHERE device_id = ? AND client_txn_id = ?"
            for key in {k for k in map(txn_key, events) if k is not None}:
                row = conn.execute(lookup, key).fetchone()
                if row is not None:
                    existing[key] = values_to_event(row)
        fresh = select_fresh(events, existing)
        stored = append_sqlite(conn, [events[i] for i in fresh], now_ms, hooks, pos)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return BatchResult(existing, fresh, stored)


class SqliteBatchWriter:
    def __init__(self, db: Database, hooks: Hooks) -> None:
        self._db = db
        self._hooks = hooks

    async def commit(self, events: Sequence[NewEvent], now_ms: int) -> BatchResult:
        async with self._db.batch_connection() as driver:  # the aiosqlite connection
            # aiosqlite runs callables in its connection thread, as SQLAlchemy's adapter does.
            result: BatchResult = await driver._execute(
                _sqlite_batch, driver._conn, list(events), now_ms, self._hooks
            )
            return result


# ---------------------------------------------------------------- PostgreSQL


class PostgresBatchWriter:
    def __init__(self, db: Database, hooks: Hooks) -> None:
        self._db = db
        self._hooks = hooks

    async def commit(self, events: Sequence[NewEvent], now_ms: int) -> BatchResult:
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
        self, pg: Any, events: Sequence[NewEvent], now_ms: int, *, look_up: bool
    ) -> BatchResult:
        pos = await postgres_position(pg)
        keys = list({k for k in map(txn_key, events) if k is not None}) if look_up else []
        existing: dict[TxnKey, StoredEvent] = {}
        if keys:
            # A generic plan cannot see how many keys the arrays hold: with this look-up on
            # every batch, once PostgreSQL switched to one after a run of large batches, each
            # later commit took ~50 ms. It is the rare path now; plan it each time.
            await pg.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            columns = ", ".join(f"e.{c}" for c in READ_NAMES)
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
                existing[(values[-2], values[-1])] = values_to_event(values[:-2])
        fresh = select_fresh(events, existing)
        stored = await append_postgres(pg, [events[i] for i in fresh], now_ms, self._hooks, pos)
        return BatchResult(existing, fresh, stored)


def batch_writer(db: Database, hooks: Hooks) -> BatchWriter:
    return SqliteBatchWriter(db, hooks) if db.is_sqlite else PostgresBatchWriter(db, hooks)
