"""Conversation membership: who belongs to which conversation, from which seq, in which role,
and how far each has read. Private to the conversations feature (its service calls this).

Membership is what the conversation stream kind's audience is made of: a member may read the
conversation's events from the seq of their join up to that of their leave.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, Index, String, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.core.events import Span
from qunliao.storage.db import metadata

stream_members = Table(
    "stream_members",
    metadata,
    Column("stream_id", String(40), primary_key=True),
    Column("user_id", String(40), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("joined_seq", BigInteger, nullable=False),
    Column("left_seq", BigInteger, nullable=True),
    Column("read_seq", BigInteger, nullable=False),
    Column("muted_until", BigInteger, nullable=True),
    Column("joined_at", BigInteger, nullable=False),
    Index("ix_stream_members_user", "user_id", "stream_id"),
)


@dataclass(frozen=True)
class Member:
    stream_id: str
    user_id: str
    role: str
    joined_seq: int
    left_seq: int | None
    read_seq: int
    muted_until: int | None

    @property
    def active(self) -> bool:
        return self.left_seq is None


MEMBER_COLUMNS = [
    stream_members.c.stream_id,
    stream_members.c.user_id,
    stream_members.c.role,
    stream_members.c.joined_seq,
    stream_members.c.left_seq,
    stream_members.c.read_seq,
    stream_members.c.muted_until,
]


def _member(row: Any) -> Member:
    return Member(
        stream_id=row.stream_id,
        user_id=row.user_id,
        role=row.role,
        joined_seq=int(row.joined_seq),
        left_seq=None if row.left_seq is None else int(row.left_seq),
        read_seq=int(row.read_seq),
        muted_until=row.muted_until,
    )


async def get_member(conn: AsyncConnection, stream_id: str, user_id: str) -> Member | None:
    row = (
        await conn.execute(
            select(*MEMBER_COLUMNS).where(
                stream_members.c.stream_id == stream_id, stream_members.c.user_id == user_id
            )
        )
    ).first()
    return None if row is None else _member(row)


async def get_members(
    conn: AsyncConnection, stream_id: str, user_ids: Sequence[str]
) -> dict[str, Member]:
    found: dict[str, Member] = {}
    for start in range(0, len(user_ids), 500):
        rows = await conn.execute(
            select(*MEMBER_COLUMNS).where(
                stream_members.c.stream_id == stream_id,
                stream_members.c.user_id.in_(user_ids[start : start + 500]),
            )
        )
        found.update((r.user_id, _member(r)) for r in rows)
    return found


async def list_members(
    conn: AsyncConnection,
    stream_id: str,
    *,
    after: str | None = None,
    limit: int | None = None,
    active_only: bool = True,
) -> list[Member]:
    query = select(*MEMBER_COLUMNS).where(stream_members.c.stream_id == stream_id)
    if active_only:
        query = query.where(stream_members.c.left_seq.is_(None))
    if after is not None:
        query = query.where(stream_members.c.user_id > after)
    query = query.order_by(stream_members.c.user_id)
    if limit is not None:
        query = query.limit(limit)
    return [_member(r) for r in await conn.execute(query)]


async def count_members(conn: AsyncConnection, stream_id: str) -> int:
    return int(
        (
            await conn.execute(
                select(func.count()).where(
                    stream_members.c.stream_id == stream_id, stream_members.c.left_seq.is_(None)
                )
            )
        ).scalar_one()
    )


async def join_members(
    conn: AsyncConnection,
    stream_id: str,
    user_ids: Sequence[str],
    role: str,
    joined_seq: int,
    now_ms: int,
) -> None:
    """Make users members from `joined_seq` on (re-joining resets the earlier membership)."""
    if not user_ids:
        return
    existing = await get_members(conn, stream_id, list(user_ids))
    fresh = [u for u in user_ids if u not in existing]
    again = [u for u in user_ids if u in existing]
    if fresh:
        await conn.execute(
            stream_members.insert(),
            [
                {
                    "stream_id": stream_id,
                    "user_id": u,
                    "role": role,
                    "joined_seq": joined_seq,
                    "left_seq": None,
                    "read_seq": joined_seq,
                    "muted_until": None,
                    "joined_at": now_ms,
                }
                for u in fresh
            ],
        )
    if again:
        await conn.execute(
            update(stream_members)
            .where(stream_members.c.stream_id == stream_id, stream_members.c.user_id.in_(again))
            .values(
                role=role,
                joined_seq=joined_seq,
                left_seq=None,
                read_seq=joined_seq,
                muted_until=None,
                joined_at=now_ms,
            )
        )


async def leave_members(
    conn: AsyncConnection, stream_id: str, user_ids: Sequence[str], left_seq: int
) -> None:
    await conn.execute(
        update(stream_members)
        .where(stream_members.c.stream_id == stream_id, stream_members.c.user_id.in_(user_ids))
        .values(left_seq=left_seq)
    )


async def update_member(conn: AsyncConnection, stream_id: str, user_id: str, **values: Any) -> None:
    await conn.execute(
        update(stream_members)
        .where(stream_members.c.stream_id == stream_id, stream_members.c.user_id == user_id)
        .values(**values)
    )


async def advance_read(conn: AsyncConnection, stream_id: str, user_id: str, seq: int) -> bool:
    """Move a read position forward (never back). True if it moved."""
    result = await conn.execute(
        update(stream_members)
        .where(
            stream_members.c.stream_id == stream_id,
            stream_members.c.user_id == user_id,
            stream_members.c.read_seq < seq,
        )
        .values(read_seq=seq)
    )
    return bool(result.rowcount)


async def active_streams(conn: AsyncConnection, user_id: str) -> list[str]:
    query = select(stream_members.c.stream_id).where(
        stream_members.c.user_id == user_id, stream_members.c.left_seq.is_(None)
    )
    return [r.stream_id for r in await conn.execute(query)]


async def user_spans(conn: AsyncConnection, user_id: str) -> list[Span]:
    """Every conversation the user belongs or belonged to, from the join to the leave."""
    member = stream_members.c
    rows = await conn.execute(
        select(member.stream_id, member.joined_seq, member.left_seq).where(
            member.user_id == user_id
        )
    )
    return [Span(*r) for r in rows]


async def stream_visibility(
    conn: AsyncConnection, stream_id: str
) -> dict[str, tuple[int, int | None]]:
    """Who may see which part of a stream: user → (joined_seq, left_seq)."""
    rows = await conn.execute(
        select(
            stream_members.c.user_id, stream_members.c.joined_seq, stream_members.c.left_seq
        ).where(stream_members.c.stream_id == stream_id)
    )
    return {r.user_id: (int(r.joined_seq), r.left_seq) for r in rows}


async def member_counts(conn: AsyncConnection, stream_ids: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(stream_ids), 500):
        rows = await conn.execute(
            select(stream_members.c.stream_id, func.count())
            .where(
                stream_members.c.stream_id.in_(stream_ids[start : start + 500]),
                stream_members.c.left_seq.is_(None),
            )
            .group_by(stream_members.c.stream_id)
        )
        found.update((r[0], int(r[1])) for r in rows)
    return found


async def memberships_of(
    conn: AsyncConnection, user_id: str, stream_ids: Sequence[str]
) -> dict[str, Member]:
    found: dict[str, Member] = {}
    for start in range(0, len(stream_ids), 500):
        rows = await conn.execute(
            select(*MEMBER_COLUMNS).where(
                stream_members.c.user_id == user_id,
                stream_members.c.stream_id.in_(stream_ids[start : start + 500]),
            )
        )
        found.update((r.stream_id, _member(r)) for r in rows)
    return found


async def other_members(
    conn: AsyncConnection, stream_ids: Sequence[str], user_id: str
) -> dict[str, str]:
    """For two-person streams: stream → the member who is not `user_id`."""
    found: dict[str, str] = {}
    for start in range(0, len(stream_ids), 500):
        rows = await conn.execute(
            select(stream_members.c.stream_id, stream_members.c.user_id).where(
                stream_members.c.stream_id.in_(stream_ids[start : start + 500]),
                stream_members.c.user_id != user_id,
            )
        )
        found.update((r.stream_id, r.user_id) for r in rows)
    return found


class ReadPositions:
    """Sending a message moves the sender's own read position to it, in the same transaction
    (an `after_append` hook of the message type, on each database's driver connection)."""

    @staticmethod
    def _moves(events: Sequence[Any]) -> list[tuple[int, str, str]]:
        newest: dict[tuple[str, str], int] = {}
        for event in events:
            if event.sender_id:
                key = (event.stream_id, event.sender_id)
                newest[key] = max(newest.get(key, 0), event.seq)
        return [(seq, stream, user) for (stream, user), seq in newest.items()]

    def sqlite(self, conn: Any, events: Sequence[Any]) -> None:
        conn.executemany(
            "UPDATE stream_members SET read_seq = ? "
            "WHERE stream_id = ? AND user_id = ? AND read_seq < ?",
            [(seq, s, u, seq) for seq, s, u in self._moves(events)],
        )

    async def postgres(self, conn: Any, events: Sequence[Any]) -> None:
        moves = self._moves(events)
        await conn.execute(
            "UPDATE stream_members AS m SET read_seq = u.seq "
            "FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(seq, stream_id, user_id) "
            "WHERE m.stream_id = u.stream_id AND m.user_id = u.user_id AND m.read_seq < u.seq",
            [m[0] for m in moves],
            [m[1] for m in moves],
            [m[2] for m in moves],
        )
