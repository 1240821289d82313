"""The group-commit writer: its kept connection, its replies, its shutdown (both databases)."""

from __future__ import annotations

import asyncio
from typing import Any

from qunliao.core.errors import ApiError
from qunliao.storage.group_commit import SendOutcome
from tests.storage.test_eventlog import _message, _writer


async def _kill_kept_connection(db: Any) -> None:
    """Break the connection the batches keep, as a database restart or a network cut would."""
    driver = db._held_driver
    if db.is_sqlite:
        await driver.close()  # the aiosqlite thread ends; the next use raises
    else:
        driver.terminate()  # asyncpg: drop the socket without a goodbye


async def test_a_lost_connection_costs_one_batch_retry_not_the_sends(migrated_url: str) -> None:
    async with _writer(migrated_url) as (writer, committed):
        first = await writer.submit(_message("c_a", "你好", txn="t1"))
        await _kill_kept_connection(writer._db)
        outcomes = await asyncio.gather(
            *(writer.submit(_message("c_a", f"after {i}", txn=f"a{i}")) for i in range(10))
        )
        assert [o.event.seq for o in outcomes] == list(range(2, 12))
        assert not any(o.duplicate for o in outcomes)
        retry = await writer.submit(_message("c_a", "你好", txn="t1"))
        assert retry.duplicate and retry.event.seq == first.event.seq
        assert len(committed) == 11


async def test_a_failing_reply_does_not_stop_the_writer(migrated_url: str) -> None:
    async with _writer(migrated_url) as (writer, _committed):
        got: list[Any] = []

        def explode(_result: SendOutcome | BaseException) -> None:
            raise RuntimeError("a reply that fails")

        writer.submit_nowait(_message("c_a", "boom", txn="b1"), explode)
        writer.submit_nowait(_message("c_a", "fine", txn="f1"), got.append)
        after = await writer.submit(_message("c_a", "later", txn="l1"))
        assert isinstance(got[0], SendOutcome) and got[0].event.seq == 2
        assert after.event.seq == 3


async def test_stop_commits_what_is_queued_first(migrated_url: str) -> None:
    async with _writer(migrated_url) as (writer, committed):
        replies: list[Any] = []
        for i in range(30):
            writer.submit_nowait(_message("c_a", f"排队 {i}", txn=f"q{i}"), replies.append)
        await writer.stop()
        assert len(replies) == 30 and all(isinstance(r, SendOutcome) for r in replies)
        assert len(committed) == 30


async def test_a_value_the_database_refuses_fails_its_send_alone(migrated_url: str) -> None:
    """A NUL past validation (PostgreSQL cannot store it): the others in its batch commit, and
    it gets 400, not "unavailable, retry" forever (SQLite stores it as it is)."""
    async with _writer(migrated_url) as (writer, committed):
        outcomes = await asyncio.gather(
            *(writer.submit(_message("c_a", f"好{i}", txn=f"g{i}")) for i in range(10)),
            writer.submit(_message("c_a", "bad", txn="t\x00")),
            return_exceptions=True,
        )
        assert all(not isinstance(o, BaseException) for o in outcomes[:10]), outcomes
        poisoned = outcomes[10]
        if migrated_url.startswith("postgres"):
            assert isinstance(poisoned, ApiError) and poisoned.code == "bad_request", poisoned
            assert len(committed) == 10
        else:
            assert not isinstance(poisoned, BaseException)
