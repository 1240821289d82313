"""SQL for friend requests, contacts (with remarks) and blocks. Only contacts.service calls this."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    String,
    Table,
    and_,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.storage.db import metadata, row_dict

friend_requests = Table(
    "friend_requests",
    metadata,
    Column("request_id", String(40), primary_key=True),
    Column("from_user_id", String(40), nullable=False),
    Column("to_user_id", String(40), nullable=False),
    Column("note", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_friend_requests_to", "to_user_id", "status"),
    Index("ix_friend_requests_from", "from_user_id", "status"),
)

contacts = Table(
    "contacts",
    metadata,
    Column("user_id", String(40), primary_key=True),
    Column("contact_id", String(40), primary_key=True),
    Column("remark", String(64), nullable=False),
    Column("since", BigInteger, nullable=False),
)

blocks = Table(
    "blocks",
    metadata,
    Column("user_id", String(40), primary_key=True),
    Column("blocked_id", String(40), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_blocks_blocked", "blocked_id"),
)

# Who may put me where: one row per user who changed a default (no row: every default).
privacy_settings = Table(
    "privacy_settings",
    metadata,
    Column("user_id", String(40), primary_key=True),
    Column("group_invite_consent", Boolean, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

REQUEST_COLUMNS = [
    friend_requests.c.request_id,
    friend_requests.c.from_user_id,
    friend_requests.c.to_user_id,
    friend_requests.c.note,
    friend_requests.c.status,
    friend_requests.c.created_at,
]


async def get_request(conn: AsyncConnection, request_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            select(*REQUEST_COLUMNS).where(friend_requests.c.request_id == request_id)
        )
    ).first()
    return None if row is None else row_dict(row)


async def pending_between(conn: AsyncConnection, from_id: str, to_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            select(*REQUEST_COLUMNS).where(
                friend_requests.c.from_user_id == from_id,
                friend_requests.c.to_user_id == to_id,
                friend_requests.c.status == "pending",
            )
        )
    ).first()
    return None if row is None else row_dict(row)


async def insert_request(conn: AsyncConnection, request: dict[str, Any]) -> None:
    await conn.execute(friend_requests.insert().values(**request, updated_at=request["created_at"]))


async def set_request_status(
    conn: AsyncConnection, request_id: str, status: str, now_ms: int
) -> None:
    await conn.execute(
        update(friend_requests)
        .where(friend_requests.c.request_id == request_id)
        .values(status=status, updated_at=now_ms)
    )


async def requests_of(conn: AsyncConnection, user_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(*REQUEST_COLUMNS)
        .where(
            or_(friend_requests.c.from_user_id == user_id, friend_requests.c.to_user_id == user_id)
        )
        .order_by(friend_requests.c.created_at.desc())
        .limit(500)
    )
    return [row_dict(r) for r in rows]


async def are_contacts(conn: AsyncConnection, user_id: str, other_id: str) -> bool:
    row = (
        await conn.execute(
            select(contacts.c.user_id).where(
                contacts.c.user_id == user_id, contacts.c.contact_id == other_id
            )
        )
    ).first()
    return row is not None


async def add_contact_pair(conn: AsyncConnection, a: str, b: str, now_ms: int) -> None:
    for user_id, contact_id in ((a, b), (b, a)):
        if not await are_contacts(conn, user_id, contact_id):
            await conn.execute(
                contacts.insert().values(
                    user_id=user_id, contact_id=contact_id, remark="", since=now_ms
                )
            )


async def remove_contact_pair(conn: AsyncConnection, a: str, b: str) -> int:
    result = await conn.execute(
        delete(contacts).where(
            or_(
                and_(contacts.c.user_id == a, contacts.c.contact_id == b),
                and_(contacts.c.user_id == b, contacts.c.contact_id == a),
            )
        )
    )
    return int(result.rowcount)


async def list_contacts(conn: AsyncConnection, user_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(contacts.c.contact_id, contacts.c.remark, contacts.c.since)
        .where(contacts.c.user_id == user_id)
        .order_by(contacts.c.since)
    )
    return [row_dict(r) for r in rows]


async def set_remark(conn: AsyncConnection, user_id: str, contact_id: str, remark: str) -> int:
    result = await conn.execute(
        update(contacts)
        .where(contacts.c.user_id == user_id, contacts.c.contact_id == contact_id)
        .values(remark=remark)
    )
    return int(result.rowcount)


async def block(conn: AsyncConnection, user_id: str, blocked_id: str, now_ms: int) -> None:
    if not await is_blocked(conn, user_id, blocked_id):
        await conn.execute(
            blocks.insert().values(user_id=user_id, blocked_id=blocked_id, created_at=now_ms)
        )


async def unblock(conn: AsyncConnection, user_id: str, blocked_id: str) -> None:
    await conn.execute(
        delete(blocks).where(blocks.c.user_id == user_id, blocks.c.blocked_id == blocked_id)
    )


async def is_blocked(conn: AsyncConnection, user_id: str, blocked_id: str) -> bool:
    row = (
        await conn.execute(
            select(blocks.c.user_id).where(
                blocks.c.user_id == user_id, blocks.c.blocked_id == blocked_id
            )
        )
    ).first()
    return row is not None


async def blocked_by_me(conn: AsyncConnection, user_id: str) -> list[str]:
    rows = await conn.execute(select(blocks.c.blocked_id).where(blocks.c.user_id == user_id))
    return [r.blocked_id for r in rows]


async def who_blocked(conn: AsyncConnection, user_id: str) -> set[str]:
    rows = await conn.execute(select(blocks.c.user_id).where(blocks.c.blocked_id == user_id))
    return {r.user_id for r in rows}


async def get_settings(conn: AsyncConnection, user_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            select(privacy_settings.c.group_invite_consent).where(
                privacy_settings.c.user_id == user_id
            )
        )
    ).first()
    return None if row is None else {"group_invite_consent": bool(row.group_invite_consent)}


async def put_settings(
    conn: AsyncConnection, user_id: str, group_invite_consent: bool, now_ms: int
) -> None:
    changed = await conn.execute(
        update(privacy_settings)
        .where(privacy_settings.c.user_id == user_id)
        .values(group_invite_consent=group_invite_consent, updated_at=now_ms)
    )
    if changed.rowcount:
        return
    try:
        async with conn.begin_nested():
            await conn.execute(
                privacy_settings.insert().values(
                    user_id=user_id, group_invite_consent=group_invite_consent, updated_at=now_ms
                )
            )
    except IntegrityError:  # a concurrent first change inserted the row: ours comes after it
        await conn.execute(
            update(privacy_settings)
            .where(privacy_settings.c.user_id == user_id)
            .values(group_invite_consent=group_invite_consent, updated_at=now_ms)
        )


async def wanting_consent(conn: AsyncConnection, user_ids: list[str]) -> set[str]:
    """The users among these who must consent before they are put into a group."""
    found: set[str] = set()
    for start in range(0, len(user_ids), 500):
        rows = await conn.execute(
            select(privacy_settings.c.user_id).where(
                privacy_settings.c.user_id.in_(user_ids[start : start + 500]),
                privacy_settings.c.group_invite_consent.is_(True),
            )
        )
        found.update(r.user_id for r in rows)
    return found
