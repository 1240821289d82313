"""Property: however writers interleave, following sync tokens yields every event once, in order.

On PostgreSQL each writer has its own engine (as separate gateway processes would); a plain
autoincrement read here would skip rows that commit late. On SQLite one process owns the file.
"""

from __future__ import annotations

import asyncio
import itertools
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qunliao.core.clock import FakeClock
from qunliao.core.events import NewEvent
from qunliao.features.conversations import members
from qunliao.storage import eventlog
from qunliao.storage.db import Database
from qunliao.storage.group_commit import GroupCommit
from tests.storage.test_eventlog import LOG, events_for_user

_example = itertools.count()

plans = st.fixed_dictionaries(
    {
        "streams": st.integers(1, 4),
        "sends": st.lists(
            st.tuples(st.integers(0, 2), st.integers(0, 3), st.booleans(), st.integers(0, 3)),
            min_size=1,
            max_size=40,
        ),
        "page": st.integers(1, 7),
        "seed": st.integers(0, 2**16),
    }
)


async def _run(url: str, plan: dict) -> None:  # type: ignore[type-arg]
    run = next(_example)
    rng = random.Random(plan["seed"])
    writers_wanted = 3 if url.startswith("postgres") else 1
    dbs = [Database(url) for _ in range(writers_wanted)]
    for db in dbs:
        await db.start()
    writers = [GroupCommit(db, FakeClock(), lambda events: None) for db in dbs]
    for writer in writers:
        writer.start()
    reader_id = f"reader{run}"
    streams = [f"c_{run}_{i}" for i in range(plan["streams"])]
    try:
        async with dbs[0].write() as tx:
            for stream in streams:
                await eventlog.create_stream(tx.conn, stream, "conversation", 0)
                await members.join_members(tx.conn, stream, [reader_id], "member", 0, 0)
        async with dbs[0].read() as conn:
            start = await eventlog.max_position(conn)

        async def send(index: int, step: tuple[int, int, bool, int]) -> None:
            writer_index, stream_index, batched, pause = step
            writer_index %= len(dbs)
            stream = streams[stream_index % len(streams)]
            await asyncio.sleep(pause / 1000)
            event = NewEvent(
                stream, "message", "u_x", f"d{run}", f"t{index}", f"m_{run}_{index}",
                {"msg_type": "text", "body": {"text": str(index)}},
            )  # fmt: skip
            if batched:
                await writers[writer_index].submit(event)
            else:  # a plain write transaction, as membership changes use
                async with dbs[writer_index].write() as tx:
                    await LOG.append(tx, [event], 0)

        seen: list[tuple[str, int, int]] = []
        done = asyncio.Event()

        async def read() -> None:
            position = start
            while True:
                finished = done.is_set()
                async with dbs[rng.randrange(len(dbs))].read() as conn:
                    page, position = await events_for_user(conn, reader_id, position, plan["page"])
                seen.extend((e.stream_id, e.seq, e.pos) for e in page)
                if finished and not page:
                    return
                await asyncio.sleep(rng.choice([0, 0, 0.001]))

        reader = asyncio.create_task(read())
        await asyncio.gather(*(send(i, step) for i, step in enumerate(plan["sends"])))
        done.set()
        await reader

        async with dbs[0].read() as conn:
            truth, _ = await events_for_user(conn, reader_id, start, 10_000)
        expected = [(e.stream_id, e.seq, e.pos) for e in truth]
        assert len(expected) == len(plan["sends"])
        assert seen == expected  # nothing skipped, nothing twice, global order kept
        for stream in streams:
            seqs = [seq for s, seq, _ in seen if s == stream]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    finally:
        for writer in writers:
            await writer.stop()
        for db in dbs:
            await db.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=plans)
def test_sync_never_skips_or_repeats_under_concurrent_writers(
    migrated_url: str,
    plan: dict,  # type: ignore[type-arg]
) -> None:
    asyncio.run(_run(migrated_url, plan))
