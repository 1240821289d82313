"""SQL for group invitations: an add that waits for the invitee's consent (群聊邀请确认).

Private to the conversations feature (its service calls this). At most one invitation per group
and invitee is pending at a time; answered ones stay as a record (accepted or declined).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Column, Index, String, Table, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.storage.db import metadata, row_dict

PENDING = "pending"

group_invitations = Table(
    "group_invitations",
    metadata,
    Column("invitation_id", String(40), primary_key=True),
    Column("conversation_id", String(40), nullable=False),
    Column("inviter_id", String(40), nullable=False),
    Column("invitee_id", String(40), nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_group_invitations_invitee", "invitee_id", "state"),
    Index("ix_group_invitations_inviter", "inviter_id", "state"),
    Index("ix_group_invitations_conversation", "conversation_id", "invitee_id"),
)

COLUMNS = [
    group_invitations.c.invitation_id,
    group_invitations.c.conversation_id,
    group_invitations.c.inviter_id,
    group_invitations.c.invitee_id,
    group_invitations.c.state,
    group_invitations.c.created_at,
    group_invitations.c.updated_at,
]


async def get(conn: AsyncConnection, invitation_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            select(*COLUMNS).where(group_invitations.c.invitation_id == invitation_id)
        )
    ).first()
    return None if row is None else row_dict(row)


async def pending_for(
    conn: AsyncConnection, conversation_id: str, invitee_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The pending invitations to one group of these users, by invitee."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(invitee_ids), 500):
        rows = await conn.execute(
            select(*COLUMNS).where(
                group_invitations.c.conversation_id == conversation_id,
                group_invitations.c.invitee_id.in_(invitee_ids[start : start + 500]),
                group_invitations.c.state == PENDING,
            )
        )
        found.update((r.invitee_id, row_dict(r)) for r in rows)
    return found


async def insert_many(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(group_invitations.insert(), list(rows))


async def set_state(conn: AsyncConnection, invitation_id: str, state: str, now_ms: int) -> None:
    await conn.execute(
        update(group_invitations)
        .where(group_invitations.c.invitation_id == invitation_id)
        .values(state=state, updated_at=now_ms)
    )


async def of_user(conn: AsyncConnection, user_id: str, limit: int = 500) -> list[dict[str, Any]]:
    """Invitations the user received or sent, newest first."""
    rows = await conn.execute(
        select(*COLUMNS)
        .where(
            or_(
                group_invitations.c.invitee_id == user_id, group_invitations.c.inviter_id == user_id
            )
        )
        .order_by(group_invitations.c.created_at.desc(), group_invitations.c.invitation_id.desc())
        .limit(limit)
    )
    return [row_dict(r) for r in rows]
