"""SQL for registration invite codes. Only accounts' invites.py calls this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    String,
    Table,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.storage.db import metadata

registration_invites = Table(
    "registration_invites",
    metadata,
    Column("invite_id", String(40), primary_key=True),
    # sha256 of the code, as for access tokens: the code itself is shown once, at creation.
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("max_uses", Integer, nullable=False),
    Column("used", Integer, nullable=False),
    Column("expires_at", BigInteger, nullable=True),  # None: never
    Column("created_by", String(40), nullable=True),  # a user id; None: the admin CLI
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
)

t = registration_invites


@dataclass(frozen=True)
class Invite:
    invite_id: str
    max_uses: int
    used: int
    expires_at: int | None
    created_by: str | None
    created_at: int
    revoked_at: int | None

    def problem(self, now_ms: int) -> str | None:
        """Why this invite cannot be used now, or None when it can."""
        if self.revoked_at is not None:
            return "this invite code was revoked"
        if self.expires_at is not None and self.expires_at <= now_ms:
            return "this invite code has expired"
        if self.used >= self.max_uses:
            return "this invite code has been used up"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "invite_id": self.invite_id,
            "uses": self.max_uses,
            "used": self.used,
            "expires_at": self.expires_at,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def _invite(row: Any) -> Invite:
    return Invite(
        invite_id=row.invite_id,
        max_uses=row.max_uses,
        used=row.used,
        expires_at=row.expires_at,
        created_by=row.created_by,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


async def insert_invite(
    conn: AsyncConnection,
    *,
    invite_id: str,
    code_hash: str,
    max_uses: int,
    expires_at: int | None,
    created_by: str | None,
    now_ms: int,
) -> None:
    await conn.execute(
        t.insert().values(
            invite_id=invite_id,
            code_hash=code_hash,
            max_uses=max_uses,
            used=0,
            expires_at=expires_at,
            created_by=created_by,
            created_at=now_ms,
            revoked_at=None,
        )
    )


async def invite_by_hash(conn: AsyncConnection, code_hash: str) -> Invite | None:
    row = (await conn.execute(select(t).where(t.c.code_hash == code_hash))).first()
    return None if row is None else _invite(row)


async def invite_by_id(conn: AsyncConnection, invite_id: str) -> Invite | None:
    row = (await conn.execute(select(t).where(t.c.invite_id == invite_id))).first()
    return None if row is None else _invite(row)


async def take_use(conn: AsyncConnection, code_hash: str, now_ms: int) -> bool:
    """Count one use of a usable code; False when there is no use left to take.

    One conditional UPDATE: on PostgreSQL a second transaction updating the same row waits for
    the first to commit and then re-checks the condition against the new `used`, so two
    registrations can never both take the last use; SQLite has one writer anyway."""
    result = await conn.execute(
        update(t)
        .where(
            t.c.code_hash == code_hash,
            t.c.revoked_at.is_(None),
            t.c.used < t.c.max_uses,
            or_(t.c.expires_at.is_(None), t.c.expires_at > now_ms),
        )
        .values(used=t.c.used + 1)
    )
    return bool(result.rowcount == 1)


async def list_invites(conn: AsyncConnection, *, limit: int, usable_at: int | None) -> list[Invite]:
    """The newest `limit` invites; with `usable_at`, only those usable at that time."""
    query = select(t).order_by(t.c.created_at.desc(), t.c.invite_id.desc()).limit(limit)
    if usable_at is not None:
        query = query.where(
            t.c.revoked_at.is_(None),
            t.c.used < t.c.max_uses,
            or_(t.c.expires_at.is_(None), t.c.expires_at > usable_at),
        )
    return [_invite(r) for r in await conn.execute(query)]


async def revoke_invite(conn: AsyncConnection, invite_id: str, now_ms: int) -> None:
    """Revoke an invite (revoking one already revoked keeps the first time)."""
    await conn.execute(
        update(t)
        .where(t.c.invite_id == invite_id, t.c.revoked_at.is_(None))
        .values(revoked_at=now_ms)
    )
