"""Messages: idempotent sends (group-committed), history, edit, recall, read positions, typing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from qunliao.core.clock import Clock
from qunliao.core.errors import ApiError, bad_request, conflict, forbidden, not_found
from qunliao.core.ids import IdGenerator
from qunliao.core.principal import Principal
from qunliao.core.ratelimit import RateLimiter
from qunliao.features.contacts.service import ContactService
from qunliao.features.conversations.service import Access, ConversationService
from qunliao.storage import spine
from qunliao.storage.db import Database
from qunliao.storage.group_commit import MessageWriter, Reply, SendOutcome

OnCommitted = Callable[[Sequence[spine.StoredEvent]], None]
BroadcastState = Callable[[str, dict[str, Any], str | None], None]
MAX_TEXT_BYTES = 16_384
MAX_TXN_ID = 128
MAX_MENTIONS = 100


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
    reply_to = frame.get("reply_to")
    if reply_to is not None and (not isinstance(reply_to, str) or len(reply_to) > 40):
        raise bad_request("reply_to must be a message id")
    mentions = frame.get("mentions")
    if not mentions:
        return SendRequest(conversation_id, txn, msg_type, {"text": text}, reply_to, ())
    if mentions == "all":
        mentions = ["all"]
    if (
        not isinstance(mentions, list)
        or len(mentions) > MAX_MENTIONS
        or any(not isinstance(m, str) or len(m) > 40 for m in mentions)
    ):
        raise bad_request(f"mentions must be a list of at most {MAX_MENTIONS} user ids or 'all'")
    return SendRequest(
        conversation_id, txn, msg_type, {"text": text}, reply_to, tuple(dict.fromkeys(mentions))
    )


def _direct_peer(caller: Principal, access: Access) -> str | None:
    """The other user of a direct conversation (None for groups and notes to self)."""
    if access.conversation["kind"] != "direct":
        return None
    first, _, second = str(access.conversation["direct_key"]).partition("|")
    if not second:
        return None  # notes to self: the key is the one user
    return second if first == caller.user_id else first


def _result(event: spine.StoredEvent) -> dict[str, Any]:
    return {"message_id": event.message_id, "seq": event.seq, "sent_at": event.sent_at}


class MessageService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        ids: IdGenerator,
        writer: MessageWriter,
        conversations: ConversationService,
        contacts: ContactService,
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
        self._limiter = limiter
        self._on_committed = on_committed
        self._broadcast_state = broadcast_state
        self._recall_window_ms = int(recall_window_s * 1000)
        self._edit_window_ms = int(edit_window_s * 1000)

    # ---------------------------------------------------------------- send

    async def do_send(self, caller: Principal, request: SendRequest) -> tuple[dict[str, Any], bool]:
        """Store a message (ack after commit). Returns (result, duplicate)."""
        self._limiter.check("send:" + caller.user_id)
        access = await self._conversations.access_conversation(caller, request.conversation_id)
        self._check_not_muted(access)
        peer = _direct_peer(caller, access)
        if peer is not None:
            await self._contacts.check_not_blocked(caller.user_id, peer)
        self._check_mentions(access, request)
        named = [m for m in request.mentions if m != "all"]
        if request.reply_to is not None or named:
            async with self._db.read() as conn:
                if request.reply_to is not None and not await spine.get_message(
                    conn, request.conversation_id, request.reply_to
                ):
                    raise bad_request(f"reply_to {request.reply_to} is not in this conversation")
                members = await spine.get_members(conn, request.conversation_id, named)
            strangers = [m for m in named if m not in members or not members[m].active]
            if strangers:
                raise bad_request(f"mentioned users are not members: {', '.join(strangers[:5])}")
        outcome = await self._writer.submit(self._new_event(caller, request))
        return _result(outcome.event), outcome.duplicate

    def do_send_now(self, caller: Principal, frame: dict[str, Any], reply: Reply) -> bool:
        """The same send without awaiting anything, when every check is answered from memory.

        Returns whether the send was queued (`reply` gets the outcome after its commit), or
        False when a check needs storage (use do_send then).
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
        self._check_not_muted(access)
        if blocked:
            raise forbidden("you cannot message this user")
        self._check_mentions(access, request)
        self._writer.submit_nowait(self._new_event(caller, request), reply)
        return True

    @staticmethod
    def ack_fields(outcome: SendOutcome) -> dict[str, Any]:
        return _result(outcome.event)

    async def do_send_frame(self, caller: Principal, frame: dict[str, Any]) -> dict[str, Any]:
        result, _ = await self.do_send(caller, check_send(frame))
        return result

    def _new_event(self, caller: Principal, request: SendRequest) -> spine.NewEvent:
        return spine.NewEvent(
            stream_id=request.conversation_id,
            type=spine.MESSAGE,
            sender_id=caller.user_id,
            device_id=caller.device_id,
            client_txn_id=request.client_txn_id,
            message_id=self._ids.new("m"),
            msg_type=request.msg_type,
            body=request.body,
            reply_to=request.reply_to,
            mentions=list(request.mentions) or None,
        )

    def _check_not_muted(self, access: Access) -> None:
        member = access.member
        if member.muted_until is not None and member.muted_until > self._clock.now_ms():
            raise forbidden("you are muted in this conversation")
        if access.conversation["muted_all"] and not access.is_manager:
            raise forbidden("only the owner and admins may speak while the group is muted")

    @staticmethod
    def _check_mentions(access: Access, request: SendRequest) -> None:
        if "all" in request.mentions and not (access.is_group and access.is_manager):
            raise forbidden("only the owner and admins may mention everyone")

    async def _check_may_send(self, caller: Principal, access: Access) -> None:
        self._check_not_muted(access)
        peer = _direct_peer(caller, access)
        if peer is not None:
            await self._contacts.check_not_blocked(caller.user_id, peer)

    # ---------------------------------------------------------------- read

    async def history(
        self, caller: Principal, conversation_id: str, before_seq: int | None, limit: int
    ) -> list[dict[str, Any]]:
        access = await self._conversations.access_conversation(caller, conversation_id)
        async with self._db.read() as conn:
            found = await spine.message_history(
                conn,
                conversation_id,
                before_seq=before_seq,
                min_seq=access.member.joined_seq,
                max_seq=access.member.left_seq,
                limit=limit,
            )
        return [e.to_json() for e in found]

    async def get_message(
        self, caller: Principal, conversation_id: str, message_id: str
    ) -> dict[str, Any]:
        access = await self._conversations.access_conversation(caller, conversation_id)
        message = await self._visible_message(access, message_id)
        return message.to_json()

    async def _visible_message(self, access: Access, message_id: str) -> spine.StoredEvent:
        async with self._db.read() as conn:
            message = await spine.get_message(conn, access.conversation_id, message_id)
        if message is None or message.seq < access.member.joined_seq:
            raise not_found(f"message {message_id} does not exist")
        return message

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
            await spine.lock_position(tx.conn)  # twins of this recall wait here, then find it
            earlier = await spine.find_event(
                tx.conn, conversation_id, "message.recalled", message_id
            )
            if earlier is not None:
                return {"message_id": message_id, "seq": earlier.seq}
            await spine.erase_message(tx.conn, message_id, now)
            stored = await spine.append_events(
                tx.conn,
                [
                    spine.NewEvent(
                        stream_id=conversation_id,
                        type="message.recalled",
                        sender_id=caller.user_id,
                        message_id=message_id,
                        data={"by": caller.user_id, "recalled_at": now},
                    )
                ],
                now,
            )
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
        await self._check_may_send(caller, access)
        message = await self._visible_message(access, message_id)
        now = self._clock.now_ms()
        if message.sender_id != caller.user_id:
            raise forbidden("only the sender may edit a message")
        if message.recalled_at is not None:
            raise conflict("a recalled message cannot be edited")
        if now - message.sent_at > self._edit_window_ms:
            raise forbidden("the edit window has passed")
        async with self._db.write() as tx:
            await spine.lock_position(tx.conn)
            if not await spine.set_message_body(tx.conn, message_id, request.body, now):
                raise conflict("a recalled message cannot be edited")
            stored = await spine.append_events(
                tx.conn,
                [
                    spine.NewEvent(
                        stream_id=conversation_id,
                        type="message.edited",
                        sender_id=caller.user_id,
                        message_id=message_id,
                        body=request.body,
                    )
                ],
                now,
            )
            tx.on_commit(lambda: self._on_committed(stored))
        return {"message_id": message_id, "seq": stored[0].seq}

    # ---------------------------------------------------------------- read positions

    async def do_read(self, caller: Principal, conversation_id: str, seq: Any) -> None:
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**62:
            raise bad_request("seq must be a non-negative integer")
        await self._conversations.access_conversation(caller, conversation_id)
        async with self._db.write() as tx:
            info = await spine.stream_info(tx.conn, [conversation_id])
            if seq > int(info[conversation_id].last_seq):
                raise bad_request("seq is beyond the conversation's last_seq")
            moved = await spine.advance_read(tx.conn, conversation_id, caller.user_id, seq)
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
            message = await spine.message_at(conn, conversation_id, seq)
            if message is None or seq < access.member.joined_seq:
                raise not_found(f"no message at seq {seq}")
            members = await spine.list_members(conn, conversation_id)
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
