"""qunliao.sdk — the async Python client for qunliao servers (HTTP + WebSocket).

Self-contained on purpose (httpx, websockets, orjson only; no other qunliao module), so bots
and external programs can use it against any server. See docs/sdk.md.
"""

from qunliao.sdk._http import new_txn_id
from qunliao.sdk.client import Client
from qunliao.sdk.errors import QunliaoConnectionError, QunliaoError
from qunliao.sdk.events import (
    EVENT_TYPES,
    ConversationCreated,
    ConversationUpdated,
    Event,
    FriendRequestAccepted,
    FriendRequestReceived,
    GroupInvitationAnswered,
    GroupInvitationReceived,
    MembersAdded,
    MembersRemoved,
    MemberUpdated,
    Message,
    MessageEdited,
    MessageRecalled,
    Read,
    StateEvent,
    StoredEvent,
    Typing,
    UnknownEvent,
    decode_event,
    register_event_type,
)
from qunliao.sdk.models import RetryPolicy, SendResult, Session, SyncPage
from qunliao.sdk.websocket import WebSocketConnection

__all__ = [
    "EVENT_TYPES",
    "Client",
    "ConversationCreated",
    "ConversationUpdated",
    "Event",
    "FriendRequestAccepted",
    "FriendRequestReceived",
    "GroupInvitationAnswered",
    "GroupInvitationReceived",
    "MemberUpdated",
    "MembersAdded",
    "MembersRemoved",
    "Message",
    "MessageEdited",
    "MessageRecalled",
    "QunliaoConnectionError",
    "QunliaoError",
    "Read",
    "RetryPolicy",
    "SendResult",
    "Session",
    "StateEvent",
    "StoredEvent",
    "SyncPage",
    "Typing",
    "UnknownEvent",
    "WebSocketConnection",
    "decode_event",
    "new_txn_id",
    "register_event_type",
]
