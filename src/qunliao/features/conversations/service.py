"""Conversations: direct and group chats, members and roles, announcements, mutes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.core.cache import GraceCache
from qunliao.core.clock import Clock
from qunliao.core.errors import bad_request, conflict, forbidden, not_found
from qunliao.core.events import NewEvent, Span, StoredEvent
from qunliao.core.ids import IdGenerator
from qunliao.core.principal import Principal
from qunliao.core.streams import Registry, SpanReaders, StreamKind
from qunliao.features.accounts import AccountService
from qunliao.features.contacts import ContactService
from qunliao.features.conversations import invitations, members, store
from qunliao.features.conversations.events import (
    EVENT_TYPES,
    INBOX_EVENT_TYPES,
    ConversationCreated,
    ConversationUpdated,
    GroupInvitationAnswered,
    GroupInvitationReceived,
    MembersAdded,
    MembersRemoved,
    MemberUpdated,
)
from qunliao.features.conversations.members import Member
from qunliao.features.inbox import KIND as INBOX
from qunliao.features.inbox import InboxService
from qunliao.storage import eventlog
from qunliao.storage.db import Database, Tx

OnCommitted = Callable[[Sequence[StoredEvent]], None]
# Fields another feature adds to each conversation of a listing (messages: unread_count,
# last_message), read in the listing's connection: (conn, user_id, memberships) → by id.
Summary = Callable[[AsyncConnection, str, dict[str, Member]], Awaitable[dict[str, dict[str, Any]]]]
KIND = "conversation"
MAX_IDS_PER_REQUEST = 500
MAX_TITLE = 64
MAX_ANNOUNCEMENT = 4096
MANAGERS = frozenset({"owner", "admin"})


@dataclass(frozen=True)
class Access:
    """A caller's verified membership of a conversation."""

    conversation: dict[str, Any]
    member: Member

    @property
    def conversation_id(self) -> str:
        return str(self.conversation["conversation_id"])

    @property
    def is_group(self) -> bool:
        return bool(self.conversation["kind"] == "group")

    @property
    def is_manager(self) -> bool:
        return self.member.role in MANAGERS


def check_ids(user_ids: Sequence[str], *, what: str = "member_ids") -> list[str]:
    if len(user_ids) > MAX_IDS_PER_REQUEST:
        raise bad_request(f"at most {MAX_IDS_PER_REQUEST} {what} per request")
    if any(not isinstance(u, str) or not 1 <= len(u) <= 40 for u in user_ids):
        raise bad_request(f"{what} must be user ids")
    return list(dict.fromkeys(user_ids))


def check_title(title: str | None) -> str | None:
    if title is None:
        return None
    title = title.strip()
    if len(title) > MAX_TITLE:
        raise bad_request(f"title must be at most {MAX_TITLE} characters")
    return title or None


class ConversationService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        ids: IdGenerator,
        accounts: AccountService,
        contacts: ContactService,
        inbox: InboxService,
        log: eventlog.EventLog,
        on_committed: OnCommitted,
        *,
        max_group_members: int,
    ) -> None:
        self._db = db
        self._inbox = inbox
        self._log = log
        self._summaries: list[Summary] = []
        self._clock = clock
        self._ids = ids
        self._accounts = accounts
        self._contacts = contacts
        self._on_committed = on_committed
        self._max_members = max_group_members
        # Memberships this process verified, by conversation: dropped when this process commits a
        # change to the conversation and when the hub sees a membership or conversation event from
        # any process (forget_conversation).
        self._access: GraceCache[Access] = GraceCache(clock.monotonic)

    # ---------------------------------------------------------------- access

    async def access_conversation(
        self, caller: Principal, conversation_id: str, *, allow_former: bool = False
    ) -> Access:
        """Load a conversation the caller belongs to; 404 if it does not exist, else 403."""
        cached = self._access.fresh(conversation_id, caller.user_id)
        if cached is not None and not allow_former:
            return cached
        generation = self._access.generation(conversation_id)
        async with self._db.read() as conn:
            conversation = await store.get(conn, conversation_id)
            if conversation is None:
                raise not_found(f"conversation {conversation_id} does not exist")
            member = await members.get_member(conn, conversation_id, caller.user_id)
        if member is None or (not member.active and not allow_former):
            raise forbidden(f"you are not a member of conversation {conversation_id}")
        access = Access(conversation, member)
        if member.active:
            self._access.put(conversation_id, caller.user_id, access, generation)
        return access

    def cached_access(self, caller: Principal, conversation_id: str) -> Access | None:
        """The caller's membership if this process verified it recently, else None."""
        return self._access.get(conversation_id, caller.user_id)

    def forget_conversation(self, conversation_id: str) -> None:
        """Someone changed the conversation or its members: re-check access from storage."""
        self._access.forget(conversation_id)

    # ---------------------------------------------------------------- the stream kind

    def stream_kind(self) -> StreamKind:
        """Conversations as a stream kind: their members read them from join to leave."""
        return StreamKind(KIND, "c", self, list(EVENT_TYPES), on_change=self.forget_conversation)

    def register(self, registry: Registry) -> None:
        """The conversation stream kind, and group invitations in users' inboxes."""
        registry.add_kind(self.stream_kind())
        registry.add_types(INBOX, *INBOX_EVENT_TYPES)

    async def spans(self, conn: AsyncConnection, user_id: str) -> list[Span]:
        return await members.user_spans(conn, user_id)

    async def readers(self, stream_id: str) -> SpanReaders:
        async with self._db.read() as conn:
            return SpanReaders(await members.stream_visibility(conn, stream_id))

    def add_summary(self, summary: Summary) -> None:
        """Another feature's fields in every listed conversation (messages: unread counts)."""
        self._summaries.append(summary)

    async def _emit(self, tx: Tx, new: Sequence[NewEvent]) -> list[StoredEvent]:
        stored = await self._log.append(tx, new, self._clock.now_ms())

        def committed() -> None:
            for event in stored:
                self._access.forget(event.stream_id)
            self._on_committed(stored)

        tx.on_commit(committed)
        return stored

    # ---------------------------------------------------------------- create

    async def do_create(
        self, caller: Principal, kind: str, member_ids: Sequence[str], title: str | None
    ) -> tuple[str, bool, list[str]]:
        """Create a conversation. Returns (conversation_id, created, invited): the invited are
        the users who want to consent first; they get an invitation instead of a membership."""
        ids = check_ids(member_ids)
        title = check_title(title)
        if kind == "direct":
            if len(ids) != 1:
                raise bad_request("a direct conversation takes exactly one member id")
            if title is not None:
                raise bad_request("a direct conversation has no title")
            return *await self._create_direct(caller, ids[0]), []
        if kind != "group":
            raise bad_request("kind must be 'direct' or 'group'")
        others = [u for u in ids if u != caller.user_id]
        await self._check_users_exist(others)
        await self._contacts.check_may_add(caller.user_id, others)
        if len(others) + 1 > self._max_members:
            raise bad_request(f"a group has at most {self._max_members} members")
        consent = await self._contacts.wanting_consent(caller.user_id, others)
        joining = [u for u in others if u not in consent]
        invited = [u for u in others if u in consent]
        async with self._db.write() as tx:
            conversation_id = await self._insert(
                tx,
                caller,
                "group",
                title,
                {caller.user_id: "owner"} | dict.fromkeys(joining, "member"),
            )
            await self._invite(tx, caller.user_id, conversation_id, title, invited)
        return conversation_id, True, invited

    async def _create_direct(self, caller: Principal, other_id: str) -> tuple[str, bool]:
        if other_id != caller.user_id:
            await self._check_users_exist([other_id])
            await self._contacts.check_not_blocked(caller.user_id, other_id)
        pair = sorted({caller.user_id, other_id})
        direct_key = "|".join(pair)
        async with self._db.read() as conn:
            existing = await store.by_direct_key(conn, direct_key)
        if existing is not None:
            return existing, False
        try:
            async with self._db.write() as tx:
                conversation_id = await self._insert(
                    tx, caller, "direct", None, dict.fromkeys(pair, "member"), direct_key=direct_key
                )
        except store.DirectExists:
            async with self._db.read() as conn:
                raced = await store.by_direct_key(conn, direct_key)
            if raced is None:
                raise
            return raced, False
        return conversation_id, True

    async def _insert(
        self, tx: Tx, caller: Principal, kind: str, title: str | None, roles: dict[str, str],
        *, direct_key: str | None = None,
    ) -> str:  # fmt: skip
        """A new conversation, its stream, its `conversation.created` event and its members."""
        conversation_id = self._ids.new("c")
        now = self._clock.now_ms()
        await store.insert(tx.conn, {
            "conversation_id": conversation_id, "kind": kind, "title": title,
            "announcement": None, "owner_id": caller.user_id if kind == "group" else None,
            "direct_key": direct_key, "muted_all": False, "created_by": caller.user_id,
            "created_at": now,
        })  # fmt: skip
        await eventlog.create_stream(tx.conn, conversation_id, KIND, now)
        created_by = ConversationCreated(kind, title, caller.user_id, list(roles))
        [created] = await self._emit(
            tx, [NewEvent.of(conversation_id, created_by, sender_id=caller.user_id)]
        )
        for role in dict.fromkeys(roles.values()):
            users = [user for user, r in roles.items() if r == role]
            await members.join_members(tx.conn, conversation_id, users, role, created.seq, now)
        return conversation_id

    @staticmethod
    def _member_updated(
        caller: Principal, conversation_id: str, user_id: str, role: str, muted_until: int | None
    ) -> NewEvent:
        updated = MemberUpdated(user_id, caller.user_id, role, muted_until)
        return NewEvent.of(conversation_id, updated, sender_id=caller.user_id)

    async def _check_users_exist(self, user_ids: Sequence[str]) -> None:
        if not user_ids:
            return
        found = await self._accounts.existing_users(user_ids)
        missing = [u for u in user_ids if u not in found]
        if missing:
            raise not_found(f"users do not exist: {', '.join(missing[:10])}")

    # ---------------------------------------------------------------- read

    async def list_conversations(self, caller: Principal) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            ids = await members.active_streams(conn, caller.user_id)
        return await self._shape(caller, ids)

    async def get_conversation(self, caller: Principal, conversation_id: str) -> dict[str, Any]:
        await self.access_conversation(caller, conversation_id)
        [shaped] = await self._shape(caller, [conversation_id])
        return shaped

    async def _shape(self, caller: Principal, ids: list[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        async with self._db.read() as conn:
            rows = await store.get_many(conn, ids)
            info = await eventlog.stream_info(conn, ids)
            mine = await members.memberships_of(conn, caller.user_id, ids)
            counts = await members.member_counts(conn, ids)
            direct = [i for i in ids if rows.get(i, {}).get("kind") == "direct"]
            peers = await members.other_members(conn, direct, caller.user_id)
            extra: dict[str, dict[str, Any]] = {}
            for summary in self._summaries:
                for conversation_id, fields in (await summary(conn, caller.user_id, mine)).items():
                    extra.setdefault(conversation_id, {}).update(fields)
        shaped = []
        for conversation_id in ids:
            row, stream, member = (
                rows.get(conversation_id),
                info.get(conversation_id),
                mine.get(conversation_id),
            )
            if row is None or stream is None or member is None:
                continue
            shaped.append(
                {
                    "conversation_id": conversation_id,
                    "kind": row["kind"],
                    "title": row["title"],
                    "announcement": row["announcement"],
                    "owner_id": row["owner_id"],
                    "member_count": counts.get(conversation_id, 0),
                    "my_role": member.role,
                    "last_seq": stream.last_seq,
                    "read_seq": member.read_seq,
                    "muted_all": bool(row["muted_all"]),
                    "peer_id": peers.get(conversation_id, caller.user_id)
                    if row["kind"] == "direct"
                    else None,
                    "last_activity_at": stream.last_activity_at,
                    **extra.get(conversation_id, {}),
                }
            )
        shaped.sort(key=lambda c: c["last_activity_at"], reverse=True)
        return shaped

    async def list_members(
        self, caller: Principal, conversation_id: str, after: str | None, limit: int
    ) -> dict[str, Any]:
        await self.access_conversation(caller, conversation_id)
        async with self._db.read() as conn:
            found = await members.list_members(conn, conversation_id, after=after, limit=limit)
        names = await self._accounts.profiles([m.user_id for m in found])
        return {
            "members": [
                {
                    "user_id": m.user_id,
                    "display_name": names.get(m.user_id, {}).get("display_name"),
                    "username": names.get(m.user_id, {}).get("username"),
                    "role": m.role,
                    "read_seq": m.read_seq,
                    "muted_until": m.muted_until,
                }
                for m in found
            ],
            "next_after": found[-1].user_id if len(found) == limit else None,
        }

    async def members_of(self, conversation_id: str, user_ids: Sequence[str]) -> dict[str, Member]:
        """The memberships (current or former) of these users, for a caller already admitted."""
        async with self._db.read() as conn:
            return await members.get_members(conn, conversation_id, list(user_ids))

    async def current_members(self, conversation_id: str) -> list[Member]:
        async with self._db.read() as conn:
            return await members.list_members(conn, conversation_id)

    # ---------------------------------------------------------------- exports (operators)

    async def memberships_of_user(self, user_id: str) -> list[tuple[dict[str, Any], Member]]:
        """Every conversation the user belongs or belonged to, with their membership (whose
        span is what they may read), oldest first. For operator tools: no caller is checked."""
        async with self._db.read() as conn:
            ids = [span.stream_id for span in await members.user_spans(conn, user_id)]
            mine = await members.memberships_of(conn, user_id, ids)
            rows = await store.get_many(conn, ids)
        found = [(rows[c], mine[c]) for c in ids if c in rows and c in mine]
        found.sort(key=lambda pair: (pair[0]["created_at"], pair[0]["conversation_id"]))
        return found

    async def conversation_with_members(
        self, conversation_id: str
    ) -> tuple[dict[str, Any], list[Member]]:
        """A conversation and everyone who is or was in it; 404 if it does not exist. For
        operator tools: no caller is checked."""
        async with self._db.read() as conn:
            row = await store.get(conn, conversation_id)
            if row is None:
                raise not_found(f"conversation {conversation_id} does not exist")
            everyone = await members.list_members(conn, conversation_id, active_only=False)
        return row, everyone

    async def do_advance_read(self, caller: Principal, conversation_id: str, seq: int) -> bool:
        """Move the caller's read position forward (never back); True if it moved."""
        async with self._db.write() as tx:
            info = await eventlog.stream_info(tx.conn, [conversation_id])
            if conversation_id not in info or seq > info[conversation_id].last_seq:
                raise bad_request("seq is beyond the conversation's last_seq")
            return await members.advance_read(tx.conn, conversation_id, caller.user_id, seq)

    # ---------------------------------------------------------------- change

    async def do_update(
        self, caller: Principal, conversation_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        access = await self.access_conversation(caller, conversation_id)
        if not access.is_group:
            raise bad_request("only groups have a title, announcement or mute-all")
        if not access.is_manager:
            raise forbidden("only the owner and admins may change the group")
        values: dict[str, Any] = {}
        if "title" in changes:
            values["title"] = check_title(changes["title"])
        if "announcement" in changes:
            text = (changes["announcement"] or "").strip()
            if len(text) > MAX_ANNOUNCEMENT:
                raise bad_request(f"announcement must be at most {MAX_ANNOUNCEMENT} characters")
            values["announcement"] = text or None
        if "muted_all" in changes:
            if not isinstance(changes["muted_all"], bool):
                raise bad_request("muted_all must be true or false")
            values["muted_all"] = changes["muted_all"]
        if values:
            async with self._db.write() as tx:
                await store.set_fields(tx.conn, conversation_id, **values)
                updated = ConversationUpdated(caller.user_id, values)
                await self._emit(
                    tx, [NewEvent.of(conversation_id, updated, sender_id=caller.user_id)]
                )
        return await self.get_conversation(caller, conversation_id)

    async def do_add_members(
        self, caller: Principal, conversation_id: str, user_ids: Sequence[str]
    ) -> tuple[list[str], list[str]]:
        """Add users to a group. Returns (added, invited): those who want to consent first get
        an invitation (or keep the one pending) instead of a membership."""
        ids = check_ids(user_ids, what="user_ids")
        if not ids:
            raise bad_request("user_ids must not be empty")
        access = await self.access_conversation(caller, conversation_id)
        if not access.is_group:
            raise bad_request("members can only be added to groups")
        if access.conversation["muted_all"] and not access.is_manager:
            raise forbidden("only the owner and admins may invite while the group is muted")
        await self._check_users_exist(ids)
        await self._contacts.check_may_add(caller.user_id, ids)
        consent = await self._contacts.wanting_consent(caller.user_id, ids)
        now = self._clock.now_ms()
        async with self._db.write() as tx:
            await eventlog.lock_position(tx.conn)  # concurrent adds of one user take turns
            current = await members.get_members(tx.conn, conversation_id, ids)
            absent = [u for u in ids if u not in current or not current[u].active]
            fresh = [u for u in absent if u not in consent]
            invited = [u for u in absent if u in consent]
            title = access.conversation["title"]
            await self._invite(tx, caller.user_id, conversation_id, title, invited)
            if not fresh:
                return [], invited
            count = await members.count_members(tx.conn, conversation_id)
            if count + len(fresh) > self._max_members:
                raise bad_request(f"a group has at most {self._max_members} members")
            [added] = await self._emit(
                tx,
                [
                    NewEvent.of(
                        conversation_id, MembersAdded(fresh, caller.user_id),
                        sender_id=caller.user_id,
                    )
                ],
            )  # fmt: skip
            await members.join_members(tx.conn, conversation_id, fresh, "member", added.seq, now)
        return fresh, invited

    async def do_remove_member(self, caller: Principal, conversation_id: str, user_id: str) -> None:
        access = await self.access_conversation(caller, conversation_id)
        if not access.is_group:
            raise bad_request("nobody can leave or be removed from a direct conversation")
        async with self._db.write() as tx:
            await eventlog.lock_position(tx.conn)
            target = await members.get_member(tx.conn, conversation_id, user_id)
            if target is None or not target.active:
                raise not_found(f"{user_id} is not a member")
            leaving = user_id == caller.user_id
            if leaving:
                if (
                    target.role == "owner"
                    and await members.count_members(tx.conn, conversation_id) > 1
                ):
                    raise conflict("transfer ownership before leaving the group")
            elif not access.is_manager:
                raise forbidden("only the owner and admins may remove members")
            elif target.role == "owner" or (
                target.role == "admin" and access.member.role != "owner"
            ):
                raise forbidden("only the owner may remove admins")
            reason = "left" if leaving else "removed"
            removal = MembersRemoved([user_id], caller.user_id, reason)
            [removed] = await self._emit(
                tx, [NewEvent.of(conversation_id, removal, sender_id=caller.user_id)]
            )
            await members.leave_members(tx.conn, conversation_id, [user_id], removed.seq)

    async def do_update_member(
        self, caller: Principal, conversation_id: str, user_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        access = await self.access_conversation(caller, conversation_id)
        if not access.is_group:
            raise bad_request("direct conversations have no roles")
        values: dict[str, Any] = {}
        async with self._db.write() as tx:
            await eventlog.lock_position(tx.conn)
            target = await members.get_member(tx.conn, conversation_id, user_id)
            if target is None or not target.active:
                raise not_found(f"{user_id} is not a member")
            if "role" in changes:
                if changes["role"] not in ("admin", "member"):
                    raise bad_request("role must be 'admin' or 'member' (use transfer for owner)")
                if access.member.role != "owner":
                    raise forbidden("only the owner may change roles")
                if target.role == "owner":
                    raise bad_request("use transfer to change the owner")
                values["role"] = changes["role"]
            if "muted_until" in changes:
                until = changes["muted_until"]
                if until is not None and (not isinstance(until, int) or not 0 <= until <= 2**62):
                    raise bad_request("muted_until must be a time in ms or null")
                if not access.is_manager:
                    raise forbidden("only the owner and admins may mute members")
                if target.role == "owner" or (
                    target.role == "admin" and access.member.role != "owner"
                ):
                    raise forbidden("only the owner may mute admins")
                values["muted_until"] = until
            if values:
                await members.update_member(tx.conn, conversation_id, user_id, **values)
                event = self._member_updated(
                    caller, conversation_id, user_id, values.get("role", target.role),
                    values.get("muted_until", target.muted_until),
                )  # fmt: skip
                await self._emit(tx, [event])
        async with self._db.read() as conn:
            member = await members.get_member(conn, conversation_id, user_id)
        profile = await self._accounts.profile(user_id)
        assert member is not None
        return {
            "user_id": user_id,
            "display_name": profile.get("display_name"),
            "username": profile.get("username"),
            "role": member.role,
            "read_seq": member.read_seq,
            "muted_until": member.muted_until,
        }

    async def do_transfer(
        self, caller: Principal, conversation_id: str, user_id: str
    ) -> dict[str, Any]:
        access = await self.access_conversation(caller, conversation_id)
        if not access.is_group:
            raise bad_request("direct conversations have no owner")
        if access.member.role != "owner":
            raise forbidden("only the owner may transfer ownership")
        if user_id == caller.user_id:
            raise bad_request("you already own this group")
        async with self._db.write() as tx:
            await eventlog.lock_position(tx.conn)  # two transfers at once must not make two owners
            me = await members.get_member(tx.conn, conversation_id, caller.user_id)
            if me is None or me.role != "owner":
                raise forbidden("only the owner may transfer ownership")
            target = await members.get_member(tx.conn, conversation_id, user_id)
            if target is None or not target.active:
                raise not_found(f"{user_id} is not a member")
            await members.update_member(tx.conn, conversation_id, user_id, role="owner")
            await members.update_member(tx.conn, conversation_id, caller.user_id, role="admin")
            await store.set_fields(tx.conn, conversation_id, owner_id=user_id)
            await self._emit(
                tx,
                [
                    self._member_updated(
                        caller, conversation_id, user_id, "owner", target.muted_until
                    ),
                    self._member_updated(
                        caller, conversation_id, caller.user_id, "admin", me.muted_until
                    ),
                    NewEvent.of(
                        conversation_id,
                        ConversationUpdated(caller.user_id, {"owner_id": user_id}),
                        sender_id=caller.user_id,
                    ),
                ],
            )
        return await self.get_conversation(caller, conversation_id)

    # ---------------------------------------------------------------- invitations

    async def _invite(
        self, tx: Tx, inviter_id: str, conversation_id: str, title: str | None,
        invitee_ids: Sequence[str],
    ) -> None:  # fmt: skip
        """An invitation for each of these users, delivered to their inbox. One who already has
        one pending to this group keeps it: a retried add records and delivers nothing."""
        if not invitee_ids:
            return
        pending = await invitations.pending_for(tx.conn, conversation_id, invitee_ids)
        now = self._clock.now_ms()
        new = [
            {
                "invitation_id": self._ids.new("gi"), "conversation_id": conversation_id,
                "inviter_id": inviter_id, "invitee_id": user_id, "state": invitations.PENDING,
                "created_at": now, "updated_at": now,
            }
            for user_id in invitee_ids
            if user_id not in pending
        ]  # fmt: skip
        await invitations.insert_many(tx.conn, new)
        for invitation in await self._shape_invitations(tx.conn, new, {conversation_id: title}):
            await self._inbox.do_deliver(
                tx, [invitation["invitee_id"]], GroupInvitationReceived(invitation),
                sender_id=inviter_id,
            )  # fmt: skip

    async def _shape_invitations(
        self,
        conn: AsyncConnection,
        rows: Sequence[dict[str, Any]],
        titles: dict[str, str | None] | None = None,
    ) -> list[dict[str, Any]]:
        """Invitations as clients see them: with the group's title and both users' names."""
        titles = dict(titles or {})
        unknown = list({r["conversation_id"] for r in rows} - set(titles))
        for conversation_id, row in (await store.get_many(conn, unknown)).items():
            titles[conversation_id] = row["title"]
        names = await self._accounts.profiles(
            [r["inviter_id"] for r in rows] + [r["invitee_id"] for r in rows]
        )
        return [
            {
                "invitation_id": r["invitation_id"],
                "conversation_id": r["conversation_id"],
                "title": titles.get(r["conversation_id"]),
                "inviter_id": r["inviter_id"],
                "inviter_display_name": names.get(r["inviter_id"], {}).get("display_name"),
                "invitee_id": r["invitee_id"],
                "invitee_display_name": names.get(r["invitee_id"], {}).get("display_name"),
                "state": r["state"],
                "created_at": r["created_at"],
                "updated_at": r["updated_at"],
            }
            for r in rows
        ]

    async def list_invitations(self, caller: Principal) -> dict[str, list[dict[str, Any]]]:
        """The group invitations the caller received and sent (at most 500, newest first)."""
        async with self._db.read() as conn:
            found = await self._shape_invitations(
                conn, await invitations.of_user(conn, caller.user_id)
            )
        return {
            "incoming": [i for i in found if i["invitee_id"] == caller.user_id],
            "outgoing": [i for i in found if i["inviter_id"] == caller.user_id],
        }

    async def do_answer_invitation(
        self, caller: Principal, invitation_id: str, accept: bool
    ) -> dict[str, Any]:
        """The invitee accepts (joins the group, as the inviter's add) or declines. Answering
        the same way again changes nothing; the other way → 409."""
        now = self._clock.now_ms()
        async with self._db.write() as tx:
            await eventlog.lock_position(tx.conn)  # an add or a second answer at once waits
            invitation = await invitations.get(tx.conn, invitation_id)
            if invitation is None or caller.user_id not in (
                invitation["invitee_id"],
                invitation["inviter_id"],
            ):
                raise not_found(f"group invitation {invitation_id} does not exist")
            if invitation["invitee_id"] != caller.user_id:
                raise forbidden("only the invited user answers an invitation")
            state = "accepted" if accept else "declined"
            if invitation["state"] != invitations.PENDING:
                if invitation["state"] == state:
                    return (await self._shape_invitations(tx.conn, [invitation]))[0]
                raise conflict(f"the invitation was already {invitation['state']}")
            if accept:
                await self._do_join_invited(tx, invitation, now)
            await invitations.set_state(tx.conn, invitation_id, state, now)
            invitation |= {"state": state, "updated_at": now}
            [shaped] = await self._shape_invitations(tx.conn, [invitation])
            await self._inbox.do_deliver(
                tx, [caller.user_id], GroupInvitationAnswered(shaped), sender_id=caller.user_id
            )
        return shaped

    async def _do_join_invited(self, tx: Tx, invitation: dict[str, Any], now: int) -> None:
        """Join the invitee as the inviter's add, if the inviter still may add them: the group
        exists (404), the inviter is a member who may invite (403), there is room (409)."""
        conversation_id, inviter_id = invitation["conversation_id"], invitation["inviter_id"]
        invitee_id = invitation["invitee_id"]
        conversation = await store.get(tx.conn, conversation_id)
        if conversation is None:
            raise not_found(f"the group {conversation_id} no longer exists")
        inviter = await members.get_member(tx.conn, conversation_id, inviter_id)
        if inviter is None or not inviter.active:
            raise forbidden("the inviter is no longer a member of the group")
        if conversation["muted_all"] and inviter.role not in MANAGERS:
            raise forbidden("the group is muted: only the owner and admins may invite")
        current = await members.get_member(tx.conn, conversation_id, invitee_id)
        if current is not None and current.active:
            return  # added meanwhile (without consent asked): nothing to do but answer
        if await members.count_members(tx.conn, conversation_id) + 1 > self._max_members:
            raise conflict(f"the group is full ({self._max_members} members)")
        [added] = await self._emit(
            tx,
            [
                NewEvent.of(
                    conversation_id, MembersAdded([invitee_id], inviter_id), sender_id=inviter_id
                )
            ],
        )
        await members.join_members(tx.conn, conversation_id, [invitee_id], "member", added.seq, now)
