"""Migration 0004 moves message columns into payloads and keeps what clients see the same."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from qunliao.app import build_services
from qunliao.settings import Settings
from qunliao.storage import eventlog
from qunliao.storage.migrate import migrate_sync
from tests.support.services import database_url

OLD_EVENTS = [
    # pos, stream, seq, type, sender, device, txn, message_id, msg_type, body, reply_to,
    # mentions, sent_at, edited_at, recalled_at, data
    (1, "c_1", 1, "conversation.created", "u_a", None, None, None, None, None, None, None, 10,
     None, None, '{"kind": "group", "title": "老群", "by": "u_a", "member_ids": ["u_a", "u_b"]}'),
    (2, "c_1", 2, "message", "u_a", "v_a", "t1", "m_1", "text", '{"text": "你好 hello"}', None,
     '["u_b"]', 11, 15, None, None),
    (3, "c_1", 3, "message.edited", "u_a", None, None, "m_1", None, '{"text": "你好 hello"}',
     None, None, 15, None, None, None),
    (4, "c_1", 4, "message", "u_b", "v_b", "t2", "m_2", "text", None, "m_1", None, 12, None, 20,
     None),
    (5, "c_1", 5, "message.recalled", "u_b", None, None, "m_2", None, None, None, None, 20,
     None, None, '{"by": "u_b", "recalled_at": 20}'),
    (6, "i_b", 1, "friend_request.received", None, None, None, None, None, None, None, None, 30,
     None, None, '{"request": {"request_id": "fr_1", "note": "加个好友"}}'),
]  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        migrate_sync(url, "0003")
        yield url


async def _fill_old(url: str) -> None:
    services = build_services(Settings(database_url=url))
    db = services.db
    await db.start()
    try:
        async with db.write() as tx:
            conn = tx.conn
            for stream, kind, last in (("c_1", "conversation", 5), ("i_b", "inbox", 1)):
                await conn.execute(
                    text("INSERT INTO streams VALUES (:s, :k, :q, 12, 30)"),
                    {"s": stream, "k": kind, "q": last},
                )
            for user, stream in (("u_a", "c_1"), ("u_b", "c_1"), ("u_b", "i_b")):
                await conn.execute(
                    text(
                        "INSERT INTO stream_members VALUES (:s, :u, 'member', 0, NULL, 0, NULL, 0)"
                    ),
                    {"s": stream, "u": user},
                )
            await conn.execute(text("UPDATE stream_position SET pos = 6"))
            columns = ("pos, stream_id, seq, type, sender_id, device_id, client_txn_id, "
                       "message_id, msg_type, body, reply_to, mentions, sent_at, edited_at, "
                       "recalled_at, data")  # fmt: skip
            marks = ", ".join(f":p{i}" for i in range(16))
            for row in OLD_EVENTS:
                await conn.execute(
                    text(f"INSERT INTO events ({columns}) VALUES ({marks})"),
                    {f"p{i}": v for i, v in enumerate(row)},
                )
    finally:
        await db.close()


async def _shaped(url: str) -> tuple[list[dict[str, Any]], list[Any]]:
    services = build_services(Settings(database_url=url))
    db = services.db
    await db.start()
    try:
        async with db.read() as conn:
            found = await eventlog.events_after(conn, 0, 100)
            inbox_members = (
                await conn.execute(text("SELECT * FROM stream_members WHERE stream_id = 'i_b'"))
            ).all()
        # Migrated payloads leave absent keys out, as new events do.
        assert all(None not in e.payload.values() for e in found), [e.payload for e in found]
        return [services.registry.shape(e) for e in found], inbox_members
    finally:
        await db.close()


def test_old_events_read_the_same_after_the_migration(old_database: str) -> None:
    asyncio.run(_fill_old(old_database))
    migrate_sync(old_database)
    shaped, inbox_members = asyncio.run(_shaped(old_database))
    assert inbox_members == []  # an inbox's audience is its owner now, not a membership row
    assert shaped[0] == {
        "type": "conversation.created", "conversation_id": "c_1", "seq": 1, "kind": "group",
        "title": "老群", "by": "u_a", "member_ids": ["u_a", "u_b"], "at": 10,
    }  # fmt: skip
    assert shaped[1] == {
        "type": "message", "conversation_id": "c_1", "seq": 2, "message_id": "m_1",
        "sender_id": "u_a", "msg_type": "text", "body": {"text": "你好 hello"}, "sent_at": 11,
        "reply_to": None, "mentions": ["u_b"], "edited_at": 15, "recalled_at": None,
    }  # fmt: skip
    assert shaped[2] == {
        "type": "message.edited", "conversation_id": "c_1", "seq": 3, "message_id": "m_1",
        "body": {"text": "你好 hello"}, "edited_at": 15, "sender_id": "u_a", "at": 15,
    }  # fmt: skip
    assert shaped[3]["body"] is None and shaped[3]["recalled_at"] == 20
    assert shaped[3]["reply_to"] == "m_1" and shaped[3]["mentions"] == []
    assert shaped[4] == {
        "type": "message.recalled", "conversation_id": "c_1", "seq": 5, "message_id": "m_2",
        "by": "u_b", "recalled_at": 20, "at": 20,
    }  # fmt: skip
    assert shaped[5] == {
        "type": "friend_request.received", "conversation_id": "i_b", "seq": 1,
        "request": {"request_id": "fr_1", "note": "加个好友"}, "at": 30,
    }  # fmt: skip


def test_a_failed_migration_changes_nothing_and_can_run_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate_sync(url, "0003")
    import sqlite3

    conn = sqlite3.connect(tmp_path / "old.db")
    conn.execute("INSERT INTO streams VALUES ('c_1', 'conversation', 1, NULL, 0)")
    conn.execute(  # a body that is not JSON makes the copy fail half-way
        "INSERT INTO events (pos, stream_id, seq, type, message_id, msg_type, body, sent_at) "
        "VALUES (1, 'c_1', 1, 'message', 'm_1', 'text', 'not json', 0)"
    )
    conn.commit()
    with pytest.raises(Exception, match="malformed JSON"):
        migrate_sync(url)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "events_new" not in tables
    assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0003",)]
    conn.execute('UPDATE events SET body = \'{"text": "修好了"}\'')
    conn.commit()
    conn.close()
    migrate_sync(url)
    shaped, _ = asyncio.run(_shaped(url))
    assert shaped[0]["body"] == {"text": "修好了"} and shaped[0]["edited_at"] is None
