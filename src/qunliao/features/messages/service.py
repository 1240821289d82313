"""Messages: idempotent sends (group-committed), history, edit, recall, read positions, typing.

One send policy (`check_may_send`) serves HTTP and both WebSocket paths: each gathers the facts
(from memory on the fast path, from storage otherwise) and the policy decides. Other features add
checks with `add_send_check` (anti-fraud, moderation, quotas); none registered costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from qunliao.core.clock import Clock
from qunliao.core.errors import ApiError, bad_request, conflict, forbidden, not_found
from qunliao.core.events import NewEvent, Span, StoredEvent
from qunliao.core.http import NUL, integral
from qunliao.core.ids import IdGenerator
from qunliao.core.principal import Principal
from qunliao.core.ratelimit import RateLimiter
from qunliao.core.streams import FrameHandler, Registry
from qunliao.features.contacts import ContactService
from qunliao.features.conversations import KIND, Access, ConversationService, Member, ReadPositions
from qunliao.features.messages import store
from qunliao.features.messages.events import (
    EDITED,
    MESSAGE,
    MessageRecalled,
    event_types,
    message_json,
)
from qunliao.storage import eventlog
from qunliao.storage.db import Database
from qunliao.storage.group_commit import GroupCommit, Reply, SendOutcome

OnCommitted = Callable[[Sequence[StoredEvent]], None]
BroadcastState = Callable[[str, dict[str, Any], str | None], None]
MAX_TEXT_BYTES = 16_384
MAX_TXN_ID = 128
MAX_MENTIONS = 100
READ_COST = 0.5  # of a send's rate-limit token: 200 read positions a second, bursts of 400
MAX_READ_KNOWN = 200_000


@dataclass(slots=True)  # built per send: not frozen, which costs a __setattr__ per field
class SendRequest:
    conversation_id: str
    client_txn_id: str
    msg_type: str
    body: dict[str, Any]
    reply_to: str | None = None
    mentions: tuple[str, ...] = ()


def check_send(frame: dict[str, Any]) -> SendRequest:
    """Validate a send (HTTP body or WebSocket frame) without pydantic: this is the hot path."""
    conversation_id = frame.get("conversation_id")
    if not isinstance(conversation_id, str) or not 1 <= len(conversation_id) <= 40:
        raise bad_request("conversation_id must be a conversation id")
    txn = frame.get("client_txn_id")
    if not isinstance(txn, str) or not 1 <= len(txn) <= MAX_TXN_ID:
        raise bad_request(f"client_txn_id must be a string of 1–{MAX_TXN_ID} characters")
    if NUL in txn or NUL in conversation_id:
        raise bad_request("ids must not contain U+0000 (NUL)")
    msg_type = frame.get("msg_type", "text")
    if msg_type != "text":
        raise bad_request("msg_type must be 'text'")
    body = frame.get("body")
    if not isinstance(body, dict) or len(body) != 1 or not isinstance(body.get("text"), str):
        raise bad_request('a text message has body {"text": string}')
    text: str = body["text"]
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise bad_request("text must be valid Unicode (no lone surrogates)") from exc
    if size > MAX_TEXT_BYTES:
        raise ApiError("too_large", f"text is longer than {MAX_TEXT_BYTES} bytes of UTF-8")
    if not text or text.isspace():
        raise bad_request("text must not be empty")
    if NUL in text:
        raise bad_request("text must not contain U+0000 (NUL)")
    reply_to = frame.get("reply_to")
    if reply_to is not None and (
        not isinstance(reply_to, str) or len(reply_to) > 40 or NUL in reply_to
    ):
        raise bad_request("reply_to must be a message id")
    mentions = frame.get("mentions")
    if not mentions:
        return SendRequest(conversation_id, txn, msg_type, {"text": text}, reply_to, ())
    if mentions == "all":
        mentions = ["all"]
    if (
        not isinstance(mentions, list)
        or len(mentions) > MAX_MENTIONS
        or any(not isinstance(m, str) or len(m) > 40 or NUL in m for m in mentions)
    ):
        raise bad_request(f"mentions must be a list of at most {MAX_MENTIONS} user ids or 'all'")
    return SendRequest(
        conversation_id, txn, msg_type, {"text": text}, reply_to, tuple(dict.fromkeys(mentions))
    )


@dataclass(slots=True)
class SendContext:
    """What the policy decides on: gathered from memory (fast path) or from storage."""

    caller: Principal
    request: SendRequest
    access: Access
    now_ms: int
    blocked: bool = False  # the other user of a direct conversation blocks the caller
    reply_missing: bool = False  # reply_to names no message of this conversation
    strangers: Sequence[str] = ()  # mentioned users who are not members


# A check another feature adds to every send: raises ApiError to refuse it.
SendCheck = Callable[[SendContext], None]


def check_may_send(context: SendContext) -> None:
    """The send policy, pure: the same decision for HTTP and both WebSocket paths."""
    access, request = context.access, context.request
    member = access.member
    if member.muted_until is not None and member.muted_until > context.now_ms:
        raise forbidden("you are muted in this conversation")
    if access.conversation["muted_all"] and not access.is_manager:
        raise forbidden("only the owner and admins may speak while the group is muted")
    if context.blocked:
        raise forbidden("you cannot message this user")
    if "all" in request.mentions and not (access.is_group and access.is_manager):
        raise forbidden("only the owner and admins may mention everyone")
    if context.reply_missing:
        raise bad_request(f"reply_to {request.reply_to} is not in this conversation")
    if context.strangers:
        raise bad_request(f"mentioned users are not members: {', '.join(context.strangers[:5])}")


def _direct_peer(caller: Principal, access: Access) -> str | None:
    """The other user of a direct conversation (None for groups and notes to self)."""
    if access.conversation["kind"] != "direct":
        return None
    first, _, second = str(access.conversation["direct_key"]).partition("|")
    if not second:
        return None  # notes to self: the key is the one user
    return second if first == caller.user_id else first


def _result(event: StoredEvent) -> dict[str, Any]:
    return {"message_id": event.ref_id, "seq": event.seq, "sent_at": event.sent_at}


def ack_frame(client_txn_id: Any, outcome: SendOutcome) -> dict[str, Any]:
    """The WebSocket ack, built once per send on the hot path."""
    event = outcome.event
    return {
        "type": "ack", "client_txn_id": client_txn_id, "message_id": event.ref_id,
        "seq": event.seq, "sent_at": event.sent_at,
    }  # fmt: skip


def same_send(stored: StoredEvent, new: NewEvent) -> bool:
    """Whether a repeated client_txn_id repeats the stored message (else 409 conflict)."""
    if stored.stream_id != new.stream_id:
        return False
    # A recalled or edited message no longer has its first body; the conversation is all that
    # is left to compare.
    if stored.redacted_at is not None or stored.payload.get("edited_at") is not None:
        return True
    return stored.payload.get("body") == (new.payload or {}).get("body")


class MessageService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        ids: IdGenerator,
        writer: GroupCommit,
        conversations: ConversationService,
        contacts: ContactService,
        log: eventlog.EventLog,
        limiter: RateLimiter,
        on_committed: OnCommitted,
        broadcast_state: BroadcastState,
        *,
        recall_window_s: float,
        edit_window_s: float,
    ) -> None:
        self._db = db
        self._clock = clock
        self._ids = ids
        self._writer = writer
        self._conversations = conversations
        self._contacts = contacts
        self._log = log
        self._limiter = limiter
        self._checks: list[SendCheck] = []
        self._read_known: dict[tuple[str, str], int] = {}  # (user, conversation) → stored
        self._on_committed = on_committed
        self._broadcast_state = broadcast_state
        self._recall_window_ms = int(recall_window_s * 1000)
        self._edit_window_ms = int(edit_window_s * 1000)

    # ---------------------------------------------------------------- plugging in

    def register(self, registry: Registry) -> None:
        """Messages' event types in the conversation kind, and the `send` frame."""
        registry.add_types(KIND, *event_types(ReadPositions()))
        registry.add_frame(
            "send", FrameHandler(self.do_send_frame, self.do_send_now, result_frame=ack_frame)
        )
        registry.add_frame("read", FrameHandler(self.do_read_frame))
        registry.add_frame("typing", FrameHandler(self.do_typing_frame))
        self._conversations.add_summary(self.summaries)

    def add_send_check(self, check: SendCheck) -> None:
        """A rule of another feature for every send, after the policy's own."""
        self._checks.append(check)

    def _decide(self, context: SendContext) -> None:
        check_may_send(context)
        if self._checks:
            for check in self._checks:
                check(context)

    # ---------------------------------------------------------------- send

    async def do_send(self, caller: Principal, request: SendRequest) -> tuple[dict[str, Any], bool]:
        """Store a message (ack after commit). Returns (result, duplicate)."""
        self._limiter.check("send:" + caller.user_id)
        access = await self._conversations.access_conversation(caller, request.conversation_id)
        context = SendContext(caller, request, access, self._clock.now_ms())
        peer = _direct_peer(caller, access)
        if peer is not None:
            context.blocked = await self._contacts.is_blocked(caller.user_id, peer)
        named = [m for m in request.mentions if m != "all"]
        if named:
            found = await self._conversations.members_of(request.conversation_id, named)
            context.strangers = [m for m in named if m not in found or not found[m].active]
        if request.reply_to is not None:
            async with self._db.read() as conn:
                replied = await store.get_message(conn, request.conversation_id, request.reply_to)
            context.reply_missing = replied is None
        self._decide(context)
        outcome = await self._writer.submit(self._new_event(caller, request))
        return _result(outcome.event), outcome.duplicate

    def do_send_now(self, caller: Principal, frame: dict[str, Any], reply: Reply) -> bool:
        """The same send without awaiting anything, when every fact is in memory.

        Returns whether the send was queued (`reply` gets the outcome after its commit), or
        False when a fact needs storage (use do_send then).
        """
        request = check_send(frame)
        if request.reply_to is not None or (
            request.mentions and any(m != "all" for m in request.mentions)
        ):
            return False  # checked against storage by do_send
        access = self._conversations.cached_access(caller, request.conversation_id)
        if access is None:
            return False
        peer = _direct_peer(caller, access)
        blocked = False if peer is None else self._contacts.blocked_cached(caller.user_id, peer)
        if blocked is None:
            return False
        self._limiter.check("send:" + caller.user_id)
        self._decide(SendContext(caller, request, access, self._clock.now_ms(), blocked))
        self._writer.submit_nowait(self._new_event(caller, request), reply)
        return True

    async def do_send_frame(self, caller: Principal, frame: dict[str, Any]) -> dict[str, Any]:
        result, _ = await self.do_send(caller, check_send(frame))
        return {"type": "ack", **result}

    def _new_event(self, caller: Principal, request: SendRequest) -> NewEvent:
        payload: dict[str, Any] = {"msg_type": request.msg_type, "body": request.body}
        if request.reply_to is not None:
            payload["reply_to"] = request.reply_to
        if request.mentions:
            payload["mentions"] = list(request.mentions)
        return NewEvent(
            request.conversation_id, MESSAGE, caller.user_id, caller.device_id,
            request.client_txn_id, self._ids.new("m"), payload,
        )  # fmt: skip

    # ---------------------------------------------------------------- read

    async def history(
        self, caller: Principal, conversation_id: str, before_seq: int | None, limit: int
    ) -> list[dict[str, Any]]:
        access = await self._conversations.access_conversation(caller, conversation_id)
        member = access.member
        span = Span(conversation_id, member.joined_seq, member.left_seq)
        async with self._db.read() as conn:
            found = await store.history(conn, span, before_seq=before_seq, limit=limit)
        return [message_json(e) for e in found]

    async def messages_within(
        self, span: Span, before_seq: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """A page of the messages a reader of `span` sees, newest first (recalled ones as
        recalled, edited ones as their latest text). For operator exports: no caller is
        checked, the span is the scope."""
        async with self._db.read() as conn:
            found = await store.history(conn, span, before_seq=before_seq, limit=limit)
        return [message_json(e) for e in found]

    async def get_message(
        self, caller: Principal, conversation_id: str, message_id: str
    ) -> dict[str, Any]:
        access = await self._conversations.access_conversation(caller, conversation_id)
        return message_json(await self._visible_message(access, message_id))

    async def _visible_message(self, access: Access, message_id: str) -> StoredEvent:
        async with self._db.read() as conn:
            message = await store.get_message(conn, access.conversation_id, message_id)
        if message is None or message.seq < access.member.joined_seq:
            raise not_found(f"message {message_id} does not exist")
        return message

    async def summaries(
        self, conn: AsyncConnection, user_id: str, memberships: dict[str, Member]
    ) -> dict[str, dict[str, Any]]:
        """Each conversation's unread count and last message, for the conversation list."""
        reads = [(c, m.read_seq) for c, m in memberships.items()]
        spans = [Span(c, m.joined_seq, m.left_seq) for c, m in memberships.items()]
        unread = await store.unread_counts(conn, user_id, reads)
        last = await store.last_messages(conn, spans)
        return {
            c: {
                "unread_count": unread.get(c, 0),
                "last_message": message_json(last[c]) if c in last else None,
            }
            for c in memberships
        }

    # ---------------------------------------------------------------- edit and recall

    async def do_recall(
        self, caller: Principal, conversation_id: str, message_id: str
    ) -> dict[str, Any]:
        access = await self._conversations.access_conversation(caller, conversation_id)
        message = await self._visible_message(access, message_id)
        now = self._clock.now_ms()
        is_sender = message.sender_id == caller.user_id
        in_window = now - message.sent_at <= self._recall_window_ms
        if not ((is_sender and in_window) or (access.is_group and access.is_manager)):
            if is_sender:
                raise forbidden("the recall window has passed")
            raise forbidden("only the sender (or a group owner/admin) may recall a message")
        async with self._db.write() as tx:
            await eventlog.lock_position(tx.conn)  # twins of this recall wait here, then find it
            earlier = await store.find_recall(tx.conn, conversation_id, message_id)
            if earlier is not None:
                return {"message_id": message_id, "seq": earlier.seq}
            await store.erase(tx.conn, conversation_id, message_id, now)
            recalled = MessageRecalled(caller.user_id, now)
            new = NewEvent.of(
                conversation_id, recalled, sender_id=caller.user_id, ref_id=message_id
            )
            stored = await self._log.append(tx, [new], now)
            tx.on_commit(lambda: self._on_committed(stored))
        return {"message_id": message_id, "seq": stored[0].seq}

    async def do_edit(
        self, caller: Principal, conversation_id: str, message_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        request = check_send(
            {
                "conversation_id": conversation_id,
                "client_txn_id": "edit",
                "msg_type": "text",
                "body": body,
            }
        )
        access = await self._conversations.access_conversation(caller, conversation_id)
        now = self._clock.now_ms()
        context = SendContext(caller, request, access, now)
        peer = _direct_peer(caller, access)
        if peer is not None:
            context.blocked = await self._contacts.is_blocked(caller.user_id, peer)
        self._decide(context)
        message = await self._visible_message(access, message_id)
        if message.sender_id != caller.user_id:
            raise forbidden("only the sender may edit a message")
        if message.redacted_at is not None:
            raise conflict("a recalled message cannot be edited")
        if now - message.sent_at > self._edit_window_ms:
            raise forbidden("the edit window has passed")
        async with self._db.write() as tx:
            await eventlog.lock_position(tx.conn)
            if not await store.set_body(tx.conn, message, request.body, now):
                raise conflict("a recalled message cannot be edited")
            edit = NewEvent(
                conversation_id, EDITED, caller.user_id, ref_id=message_id,
                payload={"body": request.body},
            )  # fmt: skip
            stored = await self._log.append(tx, [edit], now)
            tx.on_commit(lambda: self._on_committed(stored))
        return {"message_id": message_id, "seq": stored[0].seq}

    # ---------------------------------------------------------------- read positions

    async def do_read(self, caller: Principal, conversation_id: str, seq: Any) -> None:
        seq = integral(seq)  # 7.0 is 7 over the WebSocket as over HTTP
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**62:
            raise bad_request("seq must be a non-negative integer")
        self._limiter.check("read:" + caller.user_id, READ_COST)
        access = await self._conversations.access_conversation(caller, conversation_id)
        key = (caller.user_id, conversation_id)
        # Read positions never move back: one at or below what this process last stored (or
        # what the membership showed) is answered without a write. A client repeating `read`
        # frames (880 a second took another user's send p50 from 7 to 737 ms) costs nothing.
        if seq <= max(self._read_known.get(key, 0), access.member.read_seq):
            return
        moved = await self._conversations.do_advance_read(caller, conversation_id, seq)
        if len(self._read_known) >= MAX_READ_KNOWN:
            self._read_known.clear()
        self._read_known[key] = max(self._read_known.get(key, 0), seq)
        if moved:
            self._broadcast_state(
                conversation_id,
                {
                    "type": "read",
                    "conversation_id": conversation_id,
                    "user_id": caller.user_id,
                    "read_seq": seq,
                },
                None,
            )

    async def do_read_frame(self, caller: Principal, frame: dict[str, Any]) -> None:
        conversation_id = frame.get("conversation_id")
        if not isinstance(conversation_id, str):
            raise bad_request("conversation_id must be a conversation id")
        await self.do_read(caller, conversation_id, frame.get("seq"))

    async def receipts(
        self, caller: Principal, conversation_id: str, seq: int
    ) -> dict[str, list[str]]:
        access = await self._conversations.access_conversation(caller, conversation_id)
        async with self._db.read() as conn:
            message = await store.message_at(conn, conversation_id, seq)
        if message is None or seq < access.member.joined_seq:
            raise not_found(f"no message at seq {seq}")
        members = await self._conversations.current_members(conversation_id)
        others = [m for m in members if m.user_id != message.sender_id and m.joined_seq <= seq]
        return {
            "read_by": [m.user_id for m in others if m.read_seq >= seq],
            "unread_by": [m.user_id for m in others if m.read_seq < seq],
        }

    async def do_typing(self, caller: Principal, conversation_id: Any, typing: Any) -> None:
        if not isinstance(conversation_id, str):
            raise bad_request("conversation_id must be a conversation id")
        if not isinstance(typing, bool):
            raise bad_request("typing must be true or false")
        self._limiter.check("typing:" + caller.user_id, 0.2)
        await self._conversations.access_conversation(caller, conversation_id)
        self._broadcast_state(
            conversation_id,
            {
                "type": "typing",
                "conversation_id": conversation_id,
                "user_id": caller.user_id,
                "typing": typing,
            },
            caller.user_id,
        )

    async def do_typing_frame(self, caller: Principal, frame: dict[str, Any]) -> None:
        await self.do_typing(caller, frame.get("conversation_id"), frame.get("typing", True))
