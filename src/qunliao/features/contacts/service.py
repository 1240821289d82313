"""Friend requests, the contact list with remarks (备注), and blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qunliao.core.cache import GraceCache
from qunliao.core.clock import Clock
from qunliao.core.errors import bad_request, conflict, forbidden, not_found
from qunliao.core.ids import IdGenerator
from qunliao.core.principal import Principal
from qunliao.core.streams import Registry
from qunliao.features.accounts import AccountService
from qunliao.features.contacts import store
from qunliao.features.contacts.events import (
    EVENT_TYPES,
    FriendRequestAccepted,
    FriendRequestReceived,
)
from qunliao.features.inbox import KIND as INBOX
from qunliao.features.inbox import InboxService
from qunliao.storage import eventlog
from qunliao.storage.db import Database, Tx

BLOCK_CACHE_S = 5.0
BLOCK_GRACE_S = 1.0  # an expired answer still served while one caller reloads it
# Privacy settings and their defaults: a user without a row has these.
DEFAULT_SETTINGS: dict[str, Any] = {"group_invite_consent": False}


class ContactService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        ids: IdGenerator,
        accounts: AccountService,
        inbox: InboxService,
    ) -> None:
        self._db = db
        self._clock = clock
        self._ids = ids
        self._accounts = accounts
        self._inbox = inbox
        # Whether a recipient blocks a sender, grouped by recipient: their block or unblock
        # drops the recipient's answers at once.
        self._blocks: GraceCache[bool] = GraceCache(
            clock.monotonic, ttl_s=BLOCK_CACHE_S, grace_s=BLOCK_GRACE_S, max_entries=100_000
        )

    def register(self, registry: Registry) -> None:
        """Friend requests arrive in users' inboxes."""
        registry.add_types(INBOX, *EVENT_TYPES)

    async def _shape(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = await self._accounts.profiles(
            [r["from_user_id"] for r in requests] + [r["to_user_id"] for r in requests]
        )
        for r in requests:
            r["from_display_name"] = names.get(r["from_user_id"], {}).get("display_name")
            r["to_display_name"] = names.get(r["to_user_id"], {}).get("display_name")
        return requests

    async def do_request(
        self, caller: Principal, user_id: str, note: str
    ) -> tuple[dict[str, Any], bool]:
        """Send a friend request. Returns (request, created)."""
        if user_id == caller.user_id:
            raise bad_request("you cannot befriend yourself")
        if len(note) > 200:
            raise bad_request("note must be at most 200 characters")
        await self._accounts.profile(user_id)  # 404 for unknown users
        now = self._clock.now_ms()
        async with self._db.write() as tx:
            # Two users asking each other at once take turns (PostgreSQL runs writers side by
            # side): the second finds the first's request and accepts it, not a second one.
            await eventlog.lock_position(tx.conn)
            if await store.is_blocked(tx.conn, user_id, caller.user_id):
                raise forbidden("this user does not accept your requests")
            if await store.are_contacts(tx.conn, caller.user_id, user_id):
                raise conflict("you are already friends")
            mine = await store.pending_between(tx.conn, caller.user_id, user_id)
            if mine is not None:
                return (await self._shape([mine]))[0], False
            theirs = await store.pending_between(tx.conn, user_id, caller.user_id)
            if theirs is not None:
                await self._accept(tx, theirs, now)
                return (await self._shape([theirs]))[0], True
            request = {
                "request_id": self._ids.new("fr"),
                "from_user_id": caller.user_id,
                "to_user_id": user_id,
                "note": note,
                "status": "pending",
                "created_at": now,
            }
            await store.insert_request(tx.conn, request)
            shaped = (await self._shape([dict(request)]))[0]
            await self._inbox.do_deliver(tx, [user_id], FriendRequestReceived(shaped))
        return shaped, True

    async def _accept(self, tx: Tx, request: dict[str, Any], now: int) -> None:
        await store.set_request_status(tx.conn, request["request_id"], "accepted", now)
        await store.add_contact_pair(tx.conn, request["from_user_id"], request["to_user_id"], now)
        request["status"] = "accepted"
        shaped = (await self._shape([dict(request)]))[0]
        both = [request["from_user_id"], request["to_user_id"]]
        await self._inbox.do_deliver(tx, both, FriendRequestAccepted(shaped))

    async def do_answer(self, caller: Principal, request_id: str, accept: bool) -> dict[str, Any]:
        now = self._clock.now_ms()
        async with self._db.write() as tx:
            request = await store.get_request(tx.conn, request_id)
            if request is None or caller.user_id not in (
                request["to_user_id"],
                request["from_user_id"],
            ):
                raise not_found(f"friend request {request_id} does not exist")
            if request["to_user_id"] != caller.user_id:
                raise forbidden("only the addressee answers a friend request")
            if request["status"] != "pending":
                if request["status"] == ("accepted" if accept else "declined"):
                    return (await self._shape([request]))[0]
                raise conflict(f"the request was already {request['status']}")
            if accept:
                await self._accept(tx, request, now)
            else:
                await store.set_request_status(tx.conn, request_id, "declined", now)
                request["status"] = "declined"
        return (await self._shape([request]))[0]

    async def list_requests(self, caller: Principal) -> dict[str, list[dict[str, Any]]]:
        async with self._db.read() as conn:
            found = await self._shape(await store.requests_of(conn, caller.user_id))
        return {
            "incoming": [r for r in found if r["to_user_id"] == caller.user_id],
            "outgoing": [r for r in found if r["from_user_id"] == caller.user_id],
        }

    async def list_contacts(self, caller: Principal) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = await store.list_contacts(conn, caller.user_id)
        profiles = await self._accounts.profiles([r["contact_id"] for r in rows])
        return [
            {**profiles[r["contact_id"]], "remark": r["remark"], "since": r["since"]}
            for r in rows
            if r["contact_id"] in profiles
        ]

    async def do_set_remark(self, caller: Principal, user_id: str, remark: str) -> dict[str, Any]:
        if len(remark) > 64:
            raise bad_request("remark must be at most 64 characters")
        async with self._db.write() as tx:
            if not await store.set_remark(tx.conn, caller.user_id, user_id, remark.strip()):
                raise not_found(f"{user_id} is not in your contacts")
        found = [c for c in await self.list_contacts(caller) if c["user_id"] == user_id]
        return found[0]

    async def do_remove_contact(self, caller: Principal, user_id: str) -> None:
        async with self._db.write() as tx:
            if not await store.remove_contact_pair(tx.conn, caller.user_id, user_id):
                raise not_found(f"{user_id} is not in your contacts")

    async def do_block(self, caller: Principal, user_id: str) -> None:
        if user_id == caller.user_id:
            raise bad_request("you cannot block yourself")
        await self._accounts.profile(user_id)
        async with self._db.write() as tx:
            await store.block(tx.conn, caller.user_id, user_id, self._clock.now_ms())
        self._blocks.forget(caller.user_id)

    async def do_unblock(self, caller: Principal, user_id: str) -> None:
        async with self._db.write() as tx:
            await store.unblock(tx.conn, caller.user_id, user_id)
        self._blocks.forget(caller.user_id)

    async def blocked(self, caller: Principal) -> list[str]:
        async with self._db.read() as conn:
            return await store.blocked_by_me(conn, caller.user_id)

    def blocked_cached(self, sender_id: str, recipient_id: str) -> bool | None:
        """Whether `recipient_id` blocks `sender_id`, if known in memory; None if not.

        When the entry has expired, this caller gets None (and reloads it through
        `is_blocked`); the others keep the known answer for BLOCK_GRACE_S meanwhile,
        so an expiry under load sends one send to the database, not every one in flight.
        """
        return self._blocks.get(recipient_id, sender_id)

    async def is_blocked(self, sender_id: str, recipient_id: str) -> bool:
        """Whether `recipient_id` has blocked `sender_id`.

        Cached briefly: this runs on every direct send. A block made through another process
        takes effect within BLOCK_CACHE_S; through this one, at once.
        """
        blocked = self._blocks.fresh(recipient_id, sender_id)
        if blocked is None:
            generation = self._blocks.generation(recipient_id)
            async with self._db.read() as conn:
                blocked = await store.is_blocked(conn, recipient_id, sender_id)
            self._blocks.put(recipient_id, sender_id, blocked, generation)
        return blocked

    async def check_may_add(self, adder_id: str, user_ids: Sequence[str]) -> None:
        """Raise forbidden when one of the users has blocked `adder_id`: a block also keeps
        the blocked user from putting you into a group (and messaging you there)."""
        if not user_ids:
            return
        async with self._db.read() as conn:
            blockers = await store.who_blocked(conn, adder_id)
        if blockers.intersection(user_ids):
            raise forbidden("a user you named does not accept you adding them to groups")

    async def wanting_consent(self, adder_id: str, user_ids: Sequence[str]) -> set[str]:
        """The users among these whom `adder_id` may only invite into a group: they asked to
        consent first (群聊邀请确认). Nobody needs their own consent."""
        others = [u for u in user_ids if u != adder_id]
        if not others:
            return set()
        async with self._db.read() as conn:
            return await store.wanting_consent(conn, others)

    async def settings(self, caller: Principal) -> dict[str, Any]:
        async with self._db.read() as conn:
            found = await store.get_settings(conn, caller.user_id)
        return DEFAULT_SETTINGS | (found or {})

    async def do_update_settings(
        self, caller: Principal, changes: dict[str, Any]
    ) -> dict[str, Any]:
        """Change some of the caller's privacy settings; the answer holds all of them."""
        unknown = set(changes) - set(DEFAULT_SETTINGS)
        if unknown:
            raise bad_request(f"unknown settings: {', '.join(sorted(unknown))}")
        if "group_invite_consent" in changes:
            consent = changes["group_invite_consent"]
            if not isinstance(consent, bool):
                raise bad_request("group_invite_consent must be true or false")
            async with self._db.write() as tx:
                await store.put_settings(tx.conn, caller.user_id, consent, self._clock.now_ms())
        return await self.settings(caller)

    async def check_not_blocked(self, sender_id: str, recipient_id: str) -> None:
        """Raise forbidden when `recipient_id` has blocked `sender_id`."""
        if await self.is_blocked(sender_id, recipient_id):
            raise forbidden("you cannot message this user")

    async def search_users(self, caller: Principal, query: str, limit: int) -> list[dict[str, str]]:
        async with self._db.read() as conn:
            hidden = await store.who_blocked(conn, caller.user_id)
        return await self._accounts.search(query, limit, hidden)
