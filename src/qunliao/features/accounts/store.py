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
from sqlalchemy.sql.elements import ColumnElement

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
    Column("is_admin", Boolean, nullable=False, server_default=false()),
    Column("deactivated_at", BigInteger, nullable=True),
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
    Index("ix_devices_revoked", "revoked_at"),
)


@dataclass(frozen=True)
class User:
    user_id: str
    username: str
    display_name: str
    password_hash: str
    inbox_id: str
    created_at: int = 0
    is_admin: bool = False
    deactivated: bool = False

    def profile(self) -> dict[str, str]:
        return {
            "user_id": self.user_id,
            "username": self.username,
            "display_name": self.display_name,
        }

    def summary(self) -> dict[str, Any]:
        """What a server admin sees of an account."""
        return {
            **self.profile(),
            "is_admin": self.is_admin,
            "deactivated": self.deactivated,
            "created_at": self.created_at,
        }


def _user(row: Any) -> User:
    return User(
        user_id=row.user_id,
        username=row.username,
        display_name=row.display_name,
        password_hash=row.password_hash,
        inbox_id=row.inbox_id,
        created_at=row.created_at,
        is_admin=bool(row.is_admin),
        deactivated=row.deactivated_at is not None,
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
    is_admin: bool = False,
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
                    is_admin=is_admin,
                )
            )
    except IntegrityError as exc:
        raise UsernameTaken(username) from exc


async def user_by_name(conn: AsyncConnection, username: str) -> User | None:
    row = (await conn.execute(select(users).where(users.c.username == username))).first()
    return None if row is None else _user(row)


async def user_by_id(conn: AsyncConnection, user_id: str, *, lock: bool = False) -> User | None:
    """One user; `lock` holds the row until the transaction ends (PostgreSQL; SQLite has one
    writer anyway), so a login and a deactivation of the same user cannot interleave."""
    query = select(users).where(users.c.user_id == user_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _user(row)


async def list_users(
    conn: AsyncConnection, query: str, after_username: str | None, limit: int
) -> list[User]:
    """Users by username, from after `after_username`; `query` matches as search_users does."""
    statement = select(users).order_by(users.c.username).limit(limit)
    if query:
        statement = statement.where(_matches(query))
    if after_username is not None:
        statement = statement.where(users.c.username > after_username)
    return [_user(r) for r in await conn.execute(statement)]


async def set_deactivated(conn: AsyncConnection, user_id: str, at_ms: int | None) -> None:
    await conn.execute(update(users).where(users.c.user_id == user_id).values(deactivated_at=at_ms))


async def set_admin(conn: AsyncConnection, user_id: str, is_admin: bool) -> None:
    await conn.execute(update(users).where(users.c.user_id == user_id).values(is_admin=is_admin))


async def set_password_hash(conn: AsyncConnection, user_id: str, password_hash: str) -> None:
    await conn.execute(
        update(users).where(users.c.user_id == user_id).values(password_hash=password_hash)
    )


async def users_by_id(conn: AsyncConnection, user_ids: list[str]) -> dict[str, User]:
    found: dict[str, User] = {}
    for start in range(0, len(user_ids), 500):
        rows = await conn.execute(
            select(users).where(users.c.user_id.in_(user_ids[start : start + 500]))
        )
        found.update((r.user_id, _user(r)) for r in rows)
    return found


async def search_users(conn: AsyncConnection, query: str, limit: int) -> list[User]:
    rows = await conn.execute(
        select(users).where(_matches(query)).order_by(users.c.username).limit(limit)
    )
    return [_user(r) for r in rows]


def _matches(query: str) -> ColumnElement[bool]:
    """A username that starts with `query`, or a display name that holds it (any case)."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").lower()
    return or_(
        users.c.username.like(escaped + "%", escape="\\"),
        func.lower(users.c.display_name).like("%" + escaped + "%", escape="\\"),
    )


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


async def revoked_since(conn: AsyncConnection, since_ms: int) -> list[str]:
    """The devices revoked at or after `since_ms` (by any process, the CLI included)."""
    rows = await conn.execute(select(devices.c.device_id).where(devices.c.revoked_at >= since_ms))
    return [r.device_id for r in rows]


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
