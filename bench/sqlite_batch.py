"""The SQLite group-commit batch alone: CPU per message, and where the wall time goes.

    .venv/bin/python -m bench.sqlite_batch [--batch 100] [--batches 200] [--random-keys]
        [--page-size 2048]

Runs `storage/eventlog/batch._sqlite_batch` on a fresh, migrated database in /tmp with 64 direct
conversations (run it under `taskset -c 0` for steadier numbers). `--random-keys` uses random
message and transaction ids, as before ids started with the time; `--page-size 4096` is SQLite's
default (what databases created before 2 KiB pages have).
"""

from __future__ import annotations

import argparse
import secrets
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from qunliao.core.events import NewEvent
from qunliao.core.ids import IdGenerator
from qunliao.features.conversations import ReadPositions
from qunliao.storage.eventlog.batch import _sqlite_batch
from qunliao.storage.migrate import SQLITE_PAGE_SIZE, create_sqlite, migrate_sync

STREAMS = [f"d_{i:04d}" for i in range(64)]


class Timed:
    """A sqlite3 connection that adds up wall time per statement kind."""

    def __init__(self, conn: sqlite3.Connection, spent: Counter[str]) -> None:
        self._conn, self._spent = conn, spent

    def execute(self, sql: str, *args: Any) -> Any:
        began = time.perf_counter()
        cursor = self._conn.execute(sql, *args)
        rows = cursor.fetchall() if sql.startswith("SELECT") else None
        self._spent[" ".join(sql.split()[:3])] += time.perf_counter() - began
        return _Rows(rows) if rows is not None else cursor

    def executemany(self, sql: str, rows: Any) -> Any:
        began = time.perf_counter()
        cursor = self._conn.executemany(sql, rows)
        self._spent[" ".join(sql.split()[:3])] += time.perf_counter() - began
        return cursor

    def commit(self) -> None:
        began = time.perf_counter()
        self._conn.commit()
        self._spent["COMMIT"] += time.perf_counter() - began

    def rollback(self) -> None:
        self._conn.rollback()


class _Rows:
    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--random-keys", action="store_true")
    parser.add_argument("--page-size", type=int, default=SQLITE_PAGE_SIZE)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="qunliao-sqlite-batch-")) / "q.db"
    create_sqlite(path, args.page_size)  # before the schema: the page size is fixed then
    migrate_sync(f"sqlite:///{path}")
    conn = sqlite3.connect(path, check_same_thread=False)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=0"):
        conn.execute("PRAGMA " + pragma)
    for stream in STREAMS:
        conn.execute(
            "INSERT INTO streams (stream_id, kind, last_seq, last_activity_at) "
            "VALUES (?, 'direct', 0, 0)",
            (stream,),
        )
        for user in ("u_a" + stream, "u_b" + stream):
            conn.execute(
                "INSERT INTO stream_members (stream_id, user_id, role, joined_seq, read_seq, "
                "joined_at) VALUES (?, ?, 'member', 0, 0, 0)",
                (stream, user),
            )
    conn.commit()
    ids = IdGenerator()
    counter = iter(range(1 << 62))

    hooks = {"message": ReadPositions()}

    def batch() -> list[NewEvent]:
        out = []
        for i in range(args.batch):
            stream = STREAMS[i % len(STREAMS)]
            if args.random_keys:
                message_id, txn = "m_" + secrets.token_hex(14), secrets.token_hex(14)
            else:
                message_id, txn = ids.new("m"), f"{time.time_ns() // 10**6:012x}{next(counter)}"
            out.append(NewEvent(
                stream, "message", "u_a" + stream, "v_" + stream, txn, message_id,
                {"msg_type": "text", "body": {"text": f"你好 hello {i}"}},
            ))  # fmt: skip
        return out

    for _ in range(20):  # warm-up
        _sqlite_batch(conn, batch(), 1, hooks)
    work = [batch() for _ in range(args.batches)]
    wal = path.with_name("q.db-wal")
    wal_before = wal.stat().st_size
    began = time.process_time()
    for events in work:
        _sqlite_batch(conn, events, 1, hooks)
    cpu = time.process_time() - began
    n = args.batch * args.batches
    keys = "random" if args.random_keys else "time-ordered"
    wal_kib = (wal.stat().st_size - wal_before) / n / 1024
    print(
        f"batch {args.batch}, {keys} keys, {args.page_size} B pages: "
        f"{cpu / n * 1e6:.1f} µs CPU and {wal_kib:.1f} KiB of WAL per message"
    )
    spent: Counter[str] = Counter()
    timed = Timed(conn, spent)
    for events in [batch() for _ in range(args.batches)]:
        _sqlite_batch(timed, events, 1, hooks)  # type: ignore[arg-type]
    for what, seconds in spent.most_common():
        print(f"  {seconds / n * 1e6:6.1f} µs/message  {what}")


if __name__ == "__main__":
    main()
