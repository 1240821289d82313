"""SQL for users and devices (sessions). Only accounts.service calls this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    String,
    Table,
    bindparam,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.storage.db import metadata, row_dict

users = Table(
    "users",
    metadata,
    Column("user_id", String(40), primary_key=True),
    Column("username", String(32), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("display_name", String(64), nullable=False),
    Column("inbox_id", String(40), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # A server administrator (migration 0007; the administration work adds the same column).
    Column("is_admin", Boolean, nullable=False, server_default=false()),
)

devices = Table(
    "devices",
    metadata,
    Column("device_id", String(40), primary_key=True),
    Column("user_id", String(40), nullable=False),
    Column("device_name", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    Index("ix_devices_user", "user_id"),
)


@dataclass(frozen=True)
class User:
    user_id: str
    username: str
    display_name: str
    password_hash: str
    inbox_id: str

    def profile(self) -> dict[str, str]:
        return {
            "user_id": self.user_id,
            "username": self.username,
            "display_name": self.display_name,
        }


def _user(row: Any) -> User:
    return User(
        user_id=row.user_id,
        username=row.username,
        display_name=row.display_name,
        password_hash=row.password_hash,
        inbox_id=row.inbox_id,
    )


class UsernameTaken(Exception):
    pass


async def insert_user(
    conn: AsyncConnection,
    *,
    user_id: str,
    username: str,
    password_hash: str,
    display_name: str,
    inbox_id: str,
    now_ms: int,
) -> None:
    try:
        async with conn.begin_nested():
            await conn.execute(
                users.insert().values(
                    user_id=user_id,
                    username=username,
                    password_hash=password_hash,
                    display_name=display_name,
                    inbox_id=inbox_id,
                    created_at=now_ms,
                )
            )
    except IntegrityError as exc:
        raise UsernameTaken(username) from exc


async def user_by_name(conn: AsyncConnection, username: str) -> User | None:
    row = (await conn.execute(select(users).where(users.c.username == username))).first()
    return None if row is None else _user(row)


async def user_is_admin(conn: AsyncConnection, user_id: str) -> bool:
    row = (await conn.execute(select(users.c.is_admin).where(users.c.user_id == user_id))).first()
    return bool(row is not None and row.is_admin)


async def users_by_id(conn: AsyncConnection, user_ids: list[str]) -> dict[str, User]:
    found: dict[str, User] = {}
    for start in range(0, len(user_ids), 500):
        rows = await conn.execute(
            select(users).where(users.c.user_id.in_(user_ids[start : start + 500]))
        )
        found.update((r.user_id, _user(r)) for r in rows)
    return found


async def search_users(conn: AsyncConnection, query: str, limit: int) -> list[User]:
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = await conn.execute(
        select(users)
        .where(
            or_(
                users.c.username.like(escaped.lower() + "%", escape="\\"),
                func.lower(users.c.display_name).like("%" + escaped.lower() + "%", escape="\\"),
            )
        )
        .order_by(users.c.username)
        .limit(limit)
    )
    return [_user(r) for r in rows]


async def set_display_name(conn: AsyncConnection, user_id: str, display_name: str) -> None:
    await conn.execute(
        update(users).where(users.c.user_id == user_id).values(display_name=display_name)
    )


async def insert_device(
    conn: AsyncConnection,
    *,
    device_id: str,
    user_id: str,
    device_name: str,
    token_hash: str,
    now_ms: int,
) -> None:
    await conn.execute(
        devices.insert().values(
            device_id=device_id,
            user_id=user_id,
            device_name=device_name,
            token_hash=token_hash,
            created_at=now_ms,
            last_seen_at=now_ms,
            revoked_at=None,
        )
    )


async def device_by_token(conn: AsyncConnection, token_hash: str) -> tuple[str, str, int] | None:
    """(user_id, device_id, last_seen_at) of a live token."""
    row = (
        await conn.execute(
            select(devices.c.user_id, devices.c.device_id, devices.c.last_seen_at).where(
                devices.c.token_hash == token_hash, devices.c.revoked_at.is_(None)
            )
        )
    ).first()
    return None if row is None else (row.user_id, row.device_id, row.last_seen_at)


async def list_devices(conn: AsyncConnection, user_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(
            devices.c.device_id, devices.c.device_name, devices.c.created_at, devices.c.last_seen_at
        )
        .where(devices.c.user_id == user_id, devices.c.revoked_at.is_(None))
        .order_by(devices.c.created_at)
    )
    return [row_dict(r) for r in rows]


async def revoke_devices(
    conn: AsyncConnection,
    user_id: str,
    now_ms: int,
    *,
    only: str | None = None,
    keep: str | None = None,
) -> list[str]:
    """Revoke a user's devices (one, or all but one). Returns the revoked device ids."""
    query = select(devices.c.device_id).where(
        devices.c.user_id == user_id, devices.c.revoked_at.is_(None)
    )
    if only is not None:
        query = query.where(devices.c.device_id == only)
    if keep is not None:
        query = query.where(devices.c.device_id != keep)
    ids = [r.device_id for r in await conn.execute(query)]
    if ids:
        await conn.execute(
            update(devices).where(devices.c.device_id.in_(ids)).values(revoked_at=now_ms)
        )
    return ids


_touch = (
    update(devices)
    .where(
        devices.c.device_id == bindparam("seen_device"),
        devices.c.last_seen_at < bindparam("seen_at"),  # another process may have seen it later
    )
    .values(last_seen_at=bindparam("seen_at"))
)


async def touch_devices(conn: AsyncConnection, seen: dict[str, int]) -> None:
    """Move devices' last_seen_at forward: one statement for the whole batch (executemany)."""
    if seen:
        await conn.execute(_touch, [{"seen_device": d, "seen_at": at} for d, at in seen.items()])
