"""SQL for stored answers by (user, Idempotency-Key)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    delete,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.storage.db import metadata

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("user_id", String(40), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_idempotency_keys_created", "created_at"),
)


@dataclass(frozen=True)
class StoredAnswer:
    fingerprint: str
    status: int
    body: bytes


async def find(conn: AsyncConnection, user_id: str, key: str) -> StoredAnswer | None:
    row = (
        await conn.execute(
            select(idempotency_keys.c.fingerprint, idempotency_keys.c.status,
                   idempotency_keys.c.body)
            .where(idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key)
        )
    ).first()  # fmt: skip
    return None if row is None else StoredAnswer(row.fingerprint, int(row.status), bytes(row.body))


async def save(
    conn: AsyncConnection, user_id: str, key: str, answer: StoredAnswer, now_ms: int
) -> None:
    try:
        async with conn.begin_nested():
            await conn.execute(
                idempotency_keys.insert().values(
                    user_id=user_id, key=key, fingerprint=answer.fingerprint,
                    status=answer.status, body=answer.body, created_at=now_ms,
                )
            )  # fmt: skip
    except IntegrityError:
        pass  # a concurrent twin stored first; its answer stands


async def expire(conn: AsyncConnection, before_ms: int) -> None:
    await conn.execute(delete(idempotency_keys).where(idempotency_keys.c.created_at < before_ms))
