"""SQL for the admin audit log. Only admin.service calls this."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Integer, String, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.storage.db import metadata

# The entry id counts up in the order entries are written: "newest first" is by it, and it is
# the paging cursor (times can repeat within a millisecond, or step back with the clock).
audit = Table(
    "admin_audit",
    metadata,
    Column("entry_id", Integer, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("actor_id", String(40), nullable=True),
    Column("action", String(32), nullable=False),
    Column("target_id", String(40), nullable=True),
)


async def insert_entry(
    conn: AsyncConnection, *, at_ms: int, actor_id: str | None, action: str, target_id: str | None
) -> None:
    await conn.execute(
        audit.insert().values(at=at_ms, actor_id=actor_id, action=action, target_id=target_id)
    )


async def entries(conn: AsyncConnection, before: int | None, limit: int) -> list[dict[str, Any]]:
    """Entries newest first, from before entry id `before` (None: from the newest)."""
    query = select(audit).order_by(audit.c.entry_id.desc()).limit(limit)
    if before is not None:
        query = query.where(audit.c.entry_id < before)
    return [
        {
            "entry_id": row.entry_id,
            "at": row.at,
            "actor_id": row.actor_id,
            "action": row.action,
            "target_id": row.target_id,
        }
        for row in await conn.execute(query)
    ]
