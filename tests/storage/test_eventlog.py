"""The event log's contract: the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.core.clock import FakeClock
from qunliao.core.errors import ApiError
from qunliao.core.events import NewEvent, StoredEvent
from qunliao.features.conversations import members
from qunliao.features.messages.service import same_send
from qunliao.storage import eventlog
from qunliao.storage.db import Database
from qunliao.storage.group_commit import GroupCommit
from qunliao.storage.migrate import migrate

LOG = eventlog.EventLog({})


async def _stream(db: Database, stream_id: str, users: list[str]) -> None:
    async with db.write() as tx:
        await eventlog.create_stream(tx.conn, stream_id, "conversation", 0)
        await members.join_members(tx.conn, stream_id, users, "member", 0, 0)


def _message(stream: str, text: str, txn: str | None = None, device: str = "d1") -> NewEvent:
    return NewEvent(
        stream, "message", "u1", device, txn, f"m_{stream}_{text}",
        {"msg_type": "text", "body": {"text": text}},
    )  # fmt: skip


async def events_for_user(
    conn: AsyncConnection, user_id: str, after: int, limit: int
) -> tuple[list[StoredEvent], int]:
    """What sync reads for a member of conversations (the position first, then the spans)."""
    upto = await eventlog.max_position(conn)
    spans = await members.user_spans(conn, user_id)
    return await eventlog.read(conn, spans, after, limit, upto)


async def _events_for(db: Database, user_id: str) -> tuple[list[StoredEvent], int]:
    async with db.read() as conn:
        return await events_for_user(conn, user_id, 0, 100)


async def test_append_assigns_increasing_seq_and_pos(migrated_url: str) -> None:
    db = Database(migrated_url)
    await db.start()
    try:
        await _stream(db, "c_a", ["u1"])
        await _stream(db, "c_b", ["u1"])
        async with db.write() as tx:
            stored = await LOG.append(
                tx, [_message("c_a", "1"), _message("c_b", "1"), _message("c_a", "2")], 5
            )
        assert [(e.stream_id, e.seq) for e in stored] == [("c_a", 1), ("c_b", 1), ("c_a", 2)]
        assert [e.pos for e in stored] == [1, 2, 3]
        async with db.read() as conn:
            assert await eventlog.max_position(conn) == 3
        found, upto = await _events_for(db, "u1")
        assert [e.pos for e in found] == [1, 2, 3] and upto == 3
        assert found[0].payload == {"msg_type": "text", "body": {"text": "1"}}
    finally:
        await db.close()


async def test_rolled_back_write_leaves_no_trace(migrated_url: str) -> None:
    db = Database(migrated_url)
    await db.start()
    try:
        await _stream(db, "c_a", ["u1"])
        with pytest.raises(RuntimeError):
            async with db.write() as tx:
                await LOG.append(tx, [_message("c_a", "x")], 1)
                raise RuntimeError("boom")
        async with db.read() as conn:
            assert await eventlog.max_position(conn) == 0
            assert await eventlog.events_after(conn, 0, 10) == []
    finally:
        await db.close()


@contextlib.asynccontextmanager
async def _writer(url: str) -> AsyncIterator[tuple[GroupCommit, list[StoredEvent]]]:
    """A started GroupCommit on a fresh database with stream c_a, and what it committed."""
    db = Database(url)
    await db.start()
    committed: list[StoredEvent] = []
    writer = GroupCommit(db, FakeClock(), committed.extend, same_send=same_send)
    writer.start()
    try:
        await _stream(db, "c_a", ["u1"])
        yield writer, committed
    finally:
        await writer.stop()
        await db.close()


async def test_group_commit_dedupes_and_detects_conflicts(migrated_url: str) -> None:
    async with _writer(migrated_url) as (writer, committed):
        await _stream(writer._db, "c_b", ["u1"])
        outcomes = await asyncio.gather(
            *(writer.submit(_message("c_a", "same", txn="t1")) for _ in range(5)),
            *(writer.submit(_message("c_a", f"n{i}", txn=f"n{i}")) for i in range(50)),
        )
        assert len({o.event.ref_id for o in outcomes[:5]}) == 1
        assert sum(not o.duplicate for o in outcomes[:5]) == 1
        retry = await writer.submit(_message("c_a", "same", txn="t1"))
        assert retry.duplicate and retry.event.seq == outcomes[0].event.seq
        with pytest.raises(ApiError) as caught:
            await writer.submit(_message("c_b", "same", txn="t1"))
        assert caught.value.code == "conflict"
        assert len(committed) == 51
        assert writer.batches < 51  # concurrent sends shared commits


async def test_a_repeat_inside_a_batch_of_fresh_sends_costs_nothing_twice(
    migrated_url: str,
) -> None:
    """The batch is written without looking txn ids up; a repeat makes it go again, looking."""
    async with _writer(migrated_url) as (writer, committed):
        first = await writer.submit(_message("c_a", "原文", txn="t1"))
        outcomes = await asyncio.gather(
            *(writer.submit(_message("c_a", f"新{i}", txn=f"n{i}")) for i in range(20)),
            writer.submit(_message("c_a", "原文", txn="t1")),
            *(writer.submit(_message("c_a", f"后{i}", txn=f"m{i}")) for i in range(20)),
        )
        repeat = outcomes[20]
        assert repeat.duplicate and repeat.event.ref_id == first.event.ref_id
        fresh = [o for o in outcomes if not o.duplicate]
        assert len(fresh) == 40
        assert [o.event.seq for o in fresh] == list(range(2, 42))  # no gap left by the retry
        assert len(committed) == 41


async def test_visibility_follows_membership(migrated_url: str) -> None:
    db = Database(migrated_url)
    await db.start()
    try:
        await _stream(db, "c_a", ["u1"])
        async with db.write() as tx:
            await LOG.append(tx, [_message("c_a", "before")], 1)
            [joined] = await LOG.append(tx, [NewEvent("c_a", "members.added")], 2)
            await members.join_members(tx.conn, "c_a", ["u2"], "member", joined.seq, 2)
            await LOG.append(tx, [_message("c_a", "during")], 3)
            [left] = await LOG.append(tx, [NewEvent("c_a", "members.removed")], 4)
            await members.leave_members(tx.conn, "c_a", ["u2"], left.seq)
            await LOG.append(tx, [_message("c_a", "after")], 5)
        found, _ = await _events_for(db, "u2")
        everything, _ = await _events_for(db, "u1")
        assert [e.type for e in found] == ["members.added", "message", "members.removed"]
        assert len(everything) == 5
        assert (await _events_for(db, "u3"))[0] == []
    finally:
        await db.close()


async def test_redact_removes_content_everywhere(migrated_url: str) -> None:
    db = Database(migrated_url)
    await db.start()
    try:
        await _stream(db, "c_a", ["u1"])
        async with db.write() as tx:
            [message] = await LOG.append(tx, [_message("c_a", "secret")], 1)
            edit = NewEvent("c_a", "message.edited", ref_id=message.ref_id,
                            payload={"body": {"text": "secret2"}})  # fmt: skip
            await LOG.append(tx, [edit], 2)
            await eventlog.redact(tx.conn, "c_a", message.ref_id or "", 3, keep=("msg_type",))
        async with db.read() as conn:
            found = await eventlog.events_after(conn, 0, 10)
            assert not await eventlog.set_payload(conn, found[0].pos, {"body": "again"})
        assert [e.payload for e in found] == [{"msg_type": "text"}, {}]
        assert [e.redacted_at for e in found] == [3, 3]
    finally:
        await db.close()


async def test_migrations_are_idempotent(migrated_url: str) -> None:
    await migrate(migrated_url)  # a second run is a no-op
    db = Database(migrated_url)
    await db.start()
    try:
        assert await db.ping()
    finally:
        await db.close()
