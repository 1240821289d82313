"""Catch-up in process: `SyncService.sync` pages of 1,000 over 10,000 missed messages.

    .venv/bin/python -m bench.catchup [--messages 10000] [--repeats 10]

Fills a fresh, migrated SQLite database in /tmp with one direct conversation, then times
what the `/sync` handler does for each page (query, shaping, orjson encoding), without HTTP.
Prints the time per catch-up and per event, split into the read and the encoding. Run it under
`taskset -c 0` for steadier numbers; the harness's `catchup` workload measures it over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from qunliao.app import build_services
from qunliao.core.events import NewEvent
from qunliao.core.ids import IdGenerator
from qunliao.core.principal import Principal
from qunliao.features.conversations import ReadPositions
from qunliao.features.sync.service import SyncService
from qunliao.settings import Settings
from qunliao.storage.eventlog.batch import _sqlite_batch
from qunliao.storage.migrate import migrate_sync

STREAM, READER, WRITER = "c_catchup", "u_reader", "u_writer"


def fill(path: Path, messages: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "INSERT INTO streams (stream_id, kind, last_seq, last_activity_at) "
        "VALUES (?, 'direct', 0, 0)",
        (STREAM,),
    )
    for user in (READER, WRITER):
        conn.execute(
            "INSERT INTO stream_members (stream_id, user_id, role, joined_seq, read_seq, "
            "joined_at) VALUES (?, ?, 'member', 0, 0, 0)",
            (STREAM, user),
        )
    conn.commit()
    ids = IdGenerator()
    for start in range(0, messages, 500):
        batch = [
            NewEvent(
                STREAM, "message", WRITER, "v_w", f"t{i}", ids.new("m"),
                {"msg_type": "text", "body": {"text": f"第 {i} 条消息 message number {i}"}},
            )
            for i in range(start, min(messages, start + 500))
        ]  # fmt: skip
        _sqlite_batch(conn, batch, 1, {"message": ReadPositions()})
    conn.close()


async def measure(url: str, repeats: int) -> None:
    services = build_services(Settings(database_url=url))  # the app's sync, kinds and all
    db, sync = services.db, services.need(SyncService)
    await db.start()
    caller = Principal(user_id=READER, device_id="v_r")
    reads: list[float] = []
    totals: list[float] = []
    count = 0
    for _ in range(repeats + 2):  # the first two warm the caches
        began = time.perf_counter()
        read = 0.0
        since, count = None, 0
        while True:
            t0 = time.perf_counter()
            page = await sync.sync(caller, since, 0, 1000)
            t1 = time.perf_counter()
            body = orjson.dumps(page)
            read += t1 - t0
            if not page["events"]:
                break
            count += len(page["events"])
            since = orjson.loads(body)["next_token"]
        totals.append(time.perf_counter() - began)
        reads.append(read)
    await db.close()
    totals, reads = totals[2:], reads[2:]
    total, read = statistics.median(totals), statistics.median(reads)
    print(
        f"catch-up of {count} events: median {total * 1e3:.1f} ms, max {max(totals) * 1e3:.1f} "
        f"ms ({total / count * 1e6:.1f} µs/event; sync() {read / count * 1e6:.1f}, "
        f"orjson {(total - read) / count * 1e6:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=10)
    args: Any = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="qunliao-catchup-")) / "q.db"
    migrate_sync(f"sqlite:///{path}")
    fill(path, args.messages)
    asyncio.run(measure(f"sqlite:///{path}", args.repeats))


if __name__ == "__main__":
    main()
