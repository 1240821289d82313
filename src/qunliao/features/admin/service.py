"""Server administration: who may administer, what they do to accounts, and the audit log.

Accounts keep their own tables: this service asks AccountService to change them, after checking
that the caller is a server admin, and writes every action to the audit log. The caller is a
Principal over HTTP, or None for the `qunliao admin` CLI (whoever can run it on the server's
configuration is trusted: its entries have a null actor_id).
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from qunliao.core.clock import Clock
from qunliao.core.errors import bad_request
from qunliao.core.principal import Principal
from qunliao.features.accounts import AccountService
from qunliao.features.admin import store
from qunliao.storage.db import Database

log = logging.getLogger(__name__)

# What the audit log says was done (its "action" field).
CREATE = "user.create"
DEACTIVATE = "user.deactivate"
REACTIVATE = "user.reactivate"
RESET_PASSWORD = "user.reset_password"
MAKE_ADMIN = "user.make_admin"
REVOKE_ADMIN = "user.revoke_admin"


def encode_cursor(kind: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> str:
    """The value inside a cursor this server gave for `kind`, or 400."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    found_kind, _, value = text.partition(":")
    if found_kind != kind or not value:
        raise bad_request("cursor is not one this server gave")
    return value


class AdminService:
    def __init__(self, db: Database, clock: Clock, accounts: AccountService) -> None:
        self._db = db
        self._clock = clock
        self._accounts = accounts

    async def access_admin(self, actor: Principal | None) -> None:
        """403 unless the caller is a server admin (None, the CLI, always may)."""
        if actor is not None:
            await self._accounts.check_admin(actor)

    # ------------------------------------------------------------ reading

    async def list_users(
        self, actor: Principal | None, query: str, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        await self.access_admin(actor)
        after = decode_cursor("users", cursor) if cursor else None
        users = await self._accounts.list_accounts(query, after, limit + 1)
        more = len(users) > limit
        users = users[:limit]
        next_cursor = encode_cursor("users", users[-1]["username"]) if more else None
        return {"users": users, "next_cursor": next_cursor}

    async def account_named(self, actor: Principal | None, username: str) -> dict[str, Any]:
        await self.access_admin(actor)
        return await self._accounts.account_named(username)

    async def audit(
        self, actor: Principal | None, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        await self.access_admin(actor)
        before = None
        if cursor:
            value = decode_cursor("audit", cursor)
            if not value.isdigit():
                raise bad_request("cursor is not one this server gave")
            before = int(value)
        async with self._db.read() as conn:
            found = await store.entries(conn, before, limit + 1)
        more = len(found) > limit
        found = found[:limit]
        next_cursor = encode_cursor("audit", str(found[-1]["entry_id"])) if more else None
        entries = [{k: v for k, v in entry.items() if k != "entry_id"} for entry in found]
        return {"entries": entries, "next_cursor": next_cursor}

    # ------------------------------------------------------------ changing accounts

    async def do_create_user(
        self,
        actor: Principal | None,
        username: str,
        password: str,
        display_name: str,
        *,
        is_admin: bool = False,
    ) -> str:
        await self.access_admin(actor)
        user_id = await self._accounts.do_register(
            username, password, display_name, is_admin=is_admin
        )
        await self._record(actor, CREATE, user_id)
        if is_admin:
            await self._record(actor, MAKE_ADMIN, user_id)
        return user_id

    async def do_deactivate(self, actor: Principal | None, user_id: str) -> list[str]:
        """Deactivate an account; returns the devices whose sessions ended."""
        await self.access_admin(actor)
        if actor is not None and actor.user_id == user_id:
            raise bad_request("an admin cannot deactivate their own account")
        ended = await self._accounts.do_deactivate(user_id)
        await self._record(actor, DEACTIVATE, user_id)
        return ended

    async def do_reactivate(self, actor: Principal | None, user_id: str) -> None:
        await self.access_admin(actor)
        await self._accounts.do_reactivate(user_id)
        await self._record(actor, REACTIVATE, user_id)

    async def do_reset_password(
        self, actor: Principal | None, user_id: str, new_password: str
    ) -> list[str]:
        """Set a user's password; returns the devices whose sessions ended."""
        await self.access_admin(actor)
        ended = await self._accounts.do_reset_password(user_id, new_password)
        await self._record(actor, RESET_PASSWORD, user_id)
        return ended

    async def do_set_admin(self, actor: Principal | None, user_id: str, is_admin: bool) -> None:
        await self.access_admin(actor)
        await self._accounts.do_set_admin(user_id, is_admin)
        await self._record(actor, MAKE_ADMIN if is_admin else REVOKE_ADMIN, user_id)

    async def _record(self, actor: Principal | None, action: str, target_id: str | None) -> None:
        """Write one audit entry (after the action committed: an entry is never for a change
        that did not happen) and log it."""
        actor_id = actor.user_id if actor is not None else None
        async with self._db.write() as tx:
            await store.insert_entry(
                tx.conn,
                at_ms=self._clock.now_ms(),
                actor_id=actor_id,
                action=action,
                target_id=target_id,
            )
        log.info("admin action %s on %s by %s", action, target_id, actor_id or "cli")
