"""The one event append: positions and seqs assigned in the writing transaction.

Every write transaction takes the lock on the single `stream_position` row and holds it until
commit, so positions become visible strictly in order: a reader that has seen `pos` N never later
finds a committed event below N. That is what makes sync tokens exactly-once across processes.

There is one append per database, on its driver connection (SQLAlchemy compiles nothing here):
`append_sqlite` runs in the SQLite connection's own thread — the group-commit batch calls it
there, and ordinary writes hand it to that thread — and `append_postgres` on asyncpg, with array
parameters. Both take the plan from `plan_append` and the columns from `INSERT_COLUMNS`, and both
run the `after_append` hooks of the event types appended, in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from qunliao.core.events import NewEvent, StoredEvent
from qunliao.core.streams import AppendHook

# (column, PostgreSQL array type), in the order of every row `plan_append` makes.
INSERT_COLUMNS = (
    ("pos", "bigint"), ("stream_id", "text"), ("seq", "bigint"), ("type", "text"),
    ("sender_id", "text"), ("device_id", "text"), ("client_txn_id", "text"), ("ref_id", "text"),
    ("payload", "text"), ("sent_at", "bigint"),
)  # fmt: skip
_NAMES = ", ".join(name for name, _ in INSERT_COLUMNS)

Hooks = Mapping[str, AppendHook]


@dataclass(slots=True)
class AppendPlan:
    """What appending writes: rows (in INSERT_COLUMNS order), stream counters, the position."""

    rows: list[tuple[Any, ...]]
    stored: list[StoredEvent]
    stream_updates: list[tuple[str, int]]  # stream_id, last_seq
    pos: int


def plan_append(
    new: Sequence[NewEvent], last_seq: Mapping[str, int], pos: int, now_ms: int
) -> AppendPlan:
    """Assign `pos` and per-stream `seq` to events, in order. Pure: the appends do the I/O."""
    missing = {e.stream_id for e in new} - last_seq.keys()
    if missing:
        raise LookupError(f"unknown streams {sorted(missing)}")
    seqs = dict(last_seq)
    rows: list[tuple[Any, ...]] = []
    stored: list[StoredEvent] = []
    for item in new:
        pos += 1
        seq = seqs[item.stream_id] = seqs[item.stream_id] + 1
        payload = item.payload or {}
        rows.append((
            pos, item.stream_id, seq, item.type, item.sender_id, item.device_id,
            item.client_txn_id, item.ref_id, orjson.dumps(payload).decode() if payload else None,
            now_ms,
        ))  # fmt: skip
        stored.append(
            StoredEvent(pos, item.stream_id, seq, item.type, now_ms, item.sender_id, item.ref_id,
                        payload)
        )  # fmt: skip
    updates = [(s, seqs[s]) for s in sorted({e.stream_id for e in new})]
    return AppendPlan(rows, stored, updates, pos)


def _by_hook(hooks: Hooks, stored: Sequence[StoredEvent]) -> list[tuple[AppendHook, list[Any]]]:
    if not hooks:
        return []
    found: dict[str, list[StoredEvent]] = {}
    for event in stored:
        if event.type in hooks:
            found.setdefault(event.type, []).append(event)
    return [(hooks[t], events) for t, events in found.items()]


# ---------------------------------------------------------------- SQLite

_SQLITE_INSERT = f"INSERT INTO events ({_NAMES}) VALUES ({', '.join('?' for _ in INSERT_COLUMNS)})"


def sqlite_position(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT pos FROM stream_position WHERE id = 1").fetchone()[0])


def append_sqlite(
    conn: sqlite3.Connection, new: Sequence[NewEvent], now_ms: int, hooks: Hooks, pos: int
) -> list[StoredEvent]:
    """Append in the connection's thread, inside the caller's transaction (writes are held by
    the one write connection, so `pos`, read in this transaction, cannot move meanwhile)."""
    if not new:
        return []
    stream_ids = sorted({e.stream_id for e in new})
    marks = ", ".join("?" for _ in stream_ids)
    last_seq = dict(
        conn.execute(
            f"SELECT stream_id, last_seq FROM streams WHERE stream_id IN ({marks})", stream_ids
        ).fetchall()
    )
    plan = plan_append(new, last_seq, pos, now_ms)
    conn.executemany(_SQLITE_INSERT, plan.rows)
    conn.executemany(
        "UPDATE streams SET last_seq = ?, last_activity_at = ? WHERE stream_id = ?",
        [(seq, now_ms, stream_id) for stream_id, seq in plan.stream_updates],
    )
    conn.execute("UPDATE stream_position SET pos = ? WHERE id = 1", (plan.pos,))
    for hook, events in _by_hook(hooks, plan.stored):
        hook.sqlite(conn, events)
    return plan.stored


# ---------------------------------------------------------------- PostgreSQL

_PG_INSERT = (
    f"INSERT INTO events ({_NAMES}) SELECT * FROM unnest("
    + ", ".join(f"${i + 1}::{kind}[]" for i, (_, kind) in enumerate(INSERT_COLUMNS))
    + ")"
)


async def postgres_position(pg: Any) -> int:
    return int(await pg.fetchval("SELECT pos FROM stream_position WHERE id = 1 FOR UPDATE"))


async def append_postgres(
    pg: Any, new: Sequence[NewEvent], now_ms: int, hooks: Hooks, pos: int
) -> list[StoredEvent]:
    """Append on an asyncpg connection, inside the caller's transaction, which holds the
    position row's lock (`postgres_position`)."""
    if not new:
        return []
    stream_ids = sorted({e.stream_id for e in new})
    rows = await pg.fetch(
        "SELECT stream_id, last_seq FROM streams WHERE stream_id = ANY($1::text[])", stream_ids
    )
    plan = plan_append(new, {r[0]: int(r[1]) for r in rows}, pos, now_ms)
    await pg.execute(_PG_INSERT, *map(list, zip(*plan.rows, strict=True)))
    await pg.execute(
        "UPDATE streams AS s SET last_seq = u.last_seq, last_activity_at = $3 "
        "FROM unnest($1::text[], $2::bigint[]) AS u(stream_id, last_seq) "
        "WHERE s.stream_id = u.stream_id",
        [u[0] for u in plan.stream_updates],
        [u[1] for u in plan.stream_updates],
        now_ms,
    )
    await pg.execute("UPDATE stream_position SET pos = $1 WHERE id = 1", plan.pos)
    for hook, events in _by_hook(hooks, plan.stored):
        await hook.postgres(pg, events)
    return plan.stored
