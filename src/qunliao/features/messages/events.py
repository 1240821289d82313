"""Messages' event types, added to the conversation stream kind, and their client JSON.

A message's payload is `{"msg_type", "body", "reply_to"?, "mentions"?, "edited_at"?}`; its
`ref_id` is the message id. An edit rewrites the payload in place and appends
`message.edited`; a recall redacts the message and its edits (their bodies are gone from
storage) and appends `message.recalled`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from qunliao.core.events import EventBody, StoredEvent
from qunliao.core.streams import AppendHook, EventType

MESSAGE = "message"
EDITED = "message.edited"
RECALLED = "message.recalled"
# What a recall leaves of a message's payload: its type and its place in the thread.
KEPT_ON_RECALL = ("msg_type", "reply_to", "mentions", "edited_at")


@dataclass(slots=True)
class MessageRecalled(EventBody):
    TYPE: ClassVar[str] = RECALLED
    by: str
    recalled_at: int


def message_json(event: StoredEvent) -> dict[str, Any]:
    """API.md's message: the same shape in sync, on sockets and in history."""
    payload = event.payload
    return {
        "type": MESSAGE,
        "conversation_id": event.stream_id,
        "seq": event.seq,
        "message_id": event.ref_id,
        "sender_id": event.sender_id,
        "msg_type": payload.get("msg_type"),
        "body": payload.get("body"),
        "sent_at": event.sent_at,
        "reply_to": payload.get("reply_to"),
        "mentions": payload.get("mentions") or [],
        "edited_at": payload.get("edited_at"),
        "recalled_at": event.redacted_at,
    }


def edited_json(event: StoredEvent) -> dict[str, Any]:
    return {
        "type": EDITED,
        "conversation_id": event.stream_id,
        "seq": event.seq,
        "message_id": event.ref_id,
        "body": event.payload.get("body"),
        "edited_at": event.sent_at,
        "sender_id": event.sender_id,
        "at": event.sent_at,
    }


def recalled_json(event: StoredEvent) -> dict[str, Any]:
    return {
        "type": RECALLED,
        "conversation_id": event.stream_id,
        "seq": event.seq,
        "message_id": event.ref_id,
        **event.payload,
        "at": event.sent_at,
    }


def event_types(after_message: AppendHook) -> tuple[EventType, ...]:
    return (
        EventType(MESSAGE, shape=message_json, after_append=after_message),
        EventType(EDITED, shape=edited_json),
        EventType(RECALLED, shape=recalled_json, body=MessageRecalled),
    )
