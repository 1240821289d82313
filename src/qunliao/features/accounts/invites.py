"""The registration policy (`registration` = open | invite | closed) and invite codes.

A code is 144 random bits, URL-safe (`secrets.token_urlsafe(18)`, 24 characters). It is stored
as its sha256, like access tokens: whoever reads the database (a backup, a read-only SQL login)
cannot register with it. A fast hash is enough because a code cannot be guessed, unlike a
password; the price is that a code is shown once, when it is made, and lists show invite ids.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.core.clock import Clock
from qunliao.core.errors import bad_request, forbidden, not_found
from qunliao.core.ids import IdGenerator
from qunliao.features.accounts import invite_store as store
from qunliao.storage.db import Database

Policy = Literal["open", "invite", "closed"]
MAX_USES = 1_000_000
MAX_EXPIRES_IN_S = 10 * 365 * 86_400
CODE_BYTES = 18


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def check_invite_terms(uses: int, expires_in_s: int | None) -> None:
    if not 1 <= uses <= MAX_USES:
        raise bad_request(f"uses must be 1–{MAX_USES}")
    if expires_in_s is not None and not 1 <= expires_in_s <= MAX_EXPIRES_IN_S:
        raise bad_request(f"expires_in_s must be 1–{MAX_EXPIRES_IN_S} (ten years)")


def parse_duration(text: str) -> int:
    """'7d', '12h', '30m', '90s' or a plain number of seconds → seconds; ValueError otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
    text = text.strip().lower()
    scale = units.get(text[-1:], 0)
    number = text[:-1] if scale else text
    if not number.isascii() or not number.isdigit():
        raise ValueError(f"{text!r} is not a duration like 7d, 12h, 30m or 3600")
    return int(number) * (scale or 1)


class Invites:
    def __init__(self, db: Database, clock: Clock, ids: IdGenerator, policy: Policy) -> None:
        self._db = db
        self._clock = clock
        self._ids = ids
        self.policy: Policy = policy

    async def check_may_register(self, invite_code: str | None) -> None:
        """Whether the policy lets a stranger register: 403 `forbidden` if not. Only reads;
        `take_use` counts the code's use, in the transaction that creates the account."""
        if self.policy == "closed":
            raise forbidden("registration is closed on this server; ask an administrator")
        if self.policy == "open":
            return
        if not invite_code:
            raise forbidden("registering on this server needs an invite code")
        async with self._db.read() as conn:
            invite = await store.invite_by_hash(conn, code_hash(invite_code))
        self._check_usable(invite)

    async def take_use(self, conn: AsyncConnection, invite_code: str | None) -> None:
        """Count one use of the code, in the caller's write transaction (so a registration
        that fails later, say on a taken username, rolls the use back with it)."""
        if self.policy == "open":
            return
        if self.policy == "closed" or not invite_code:  # safe even without the check first
            await self.check_may_register(invite_code)
        hashed = code_hash(invite_code or "")
        if not await store.take_use(conn, hashed, self._clock.now_ms()):
            self._check_usable(await store.invite_by_hash(conn, hashed))
            raise forbidden("this invite code has been used up")  # by a concurrent registration

    def _check_usable(self, invite: store.Invite | None) -> None:
        if invite is None:
            raise forbidden("unknown invite code")
        problem = invite.problem(self._clock.now_ms())
        if problem is not None:
            raise forbidden(problem)

    async def do_create(
        self, *, created_by: str | None, uses: int = 1, expires_in_s: int | None = None
    ) -> dict[str, Any]:
        """A new code (`created_by`: the admin's user id; None for the CLI)."""
        check_invite_terms(uses, expires_in_s)
        code = secrets.token_urlsafe(CODE_BYTES)
        invite_id = self._ids.new("inv")
        now = self._clock.now_ms()
        expires_at = None if expires_in_s is None else now + expires_in_s * 1000
        async with self._db.write() as tx:
            await store.insert_invite(
                tx.conn,
                invite_id=invite_id,
                code_hash=code_hash(code),
                max_uses=uses,
                expires_at=expires_at,
                created_by=created_by,
                now_ms=now,
            )
        return {"invite_code": code, "invite_id": invite_id, "uses": uses, "expires_at": expires_at}

    async def list_invites(self, *, limit: int, usable_only: bool) -> list[dict[str, Any]]:
        now = self._clock.now_ms()
        async with self._db.read() as conn:
            found = await store.list_invites(
                conn, limit=limit, usable_at=now if usable_only else None
            )
        return [invite.to_json() | {"usable": invite.problem(now) is None} for invite in found]

    async def do_revoke(self, invite: str, *, by_code: bool = False) -> str:
        """Revoke an invite, named by its id (or, with `by_code`, by the code itself: the CLI;
        a code never travels in a URL). Returns its id; revoking twice is not an error."""
        async with self._db.write() as tx:
            found = await store.invite_by_id(tx.conn, invite)
            if found is None and by_code:
                found = await store.invite_by_hash(tx.conn, code_hash(invite))
            if found is None:
                raise not_found("no such invite")
            await store.revoke_invite(tx.conn, found.invite_id, self._clock.now_ms())
        return found.invite_id
