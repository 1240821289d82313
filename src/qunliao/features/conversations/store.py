"""SQL for conversation metadata (title, announcement, owner). Membership: members.py."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, String, Table, Text, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.storage.db import metadata, row_dict

conversations = Table(
    "conversations",
    metadata,
    Column("conversation_id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("title", String(64), nullable=True),
    Column("announcement", Text, nullable=True),
    Column("owner_id", String(40), nullable=True),
    Column("direct_key", String(90), nullable=True, unique=True),
    Column("muted_all", Boolean, nullable=False),
    Column("created_by", String(40), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)


class DirectExists(Exception):
    pass


async def insert(conn: AsyncConnection, row: dict[str, Any]) -> None:
    try:
        async with conn.begin_nested():
            await conn.execute(conversations.insert().values(**row))
    except IntegrityError as exc:
        raise DirectExists(row.get("direct_key")) from exc


async def get(conn: AsyncConnection, conversation_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            select(conversations).where(conversations.c.conversation_id == conversation_id)
        )
    ).first()
    return None if row is None else row_dict(row)


async def get_many(conn: AsyncConnection, ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        rows = await conn.execute(
            select(conversations).where(
                conversations.c.conversation_id.in_(ids[start : start + 500])
            )
        )
        found.update((r.conversation_id, row_dict(r)) for r in rows)
    return found


async def by_direct_key(conn: AsyncConnection, direct_key: str) -> str | None:
    row = (
        await conn.execute(
            select(conversations.c.conversation_id).where(conversations.c.direct_key == direct_key)
        )
    ).first()
    return None if row is None else str(row.conversation_id)


async def set_fields(conn: AsyncConnection, conversation_id: str, **values: Any) -> None:
    await conn.execute(
        update(conversations)
        .where(conversations.c.conversation_id == conversation_id)
        .values(**values)
    )
