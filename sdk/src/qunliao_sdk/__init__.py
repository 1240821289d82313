"""qunliao_sdk — the async Python client for qunliao servers (HTTP + WebSocket), and bots.

Its own distribution (`qunliao-sdk`, sdk/pyproject.toml): httpx, websockets and orjson only,
nothing of the server, so a bot installs it alone. The server package re-exports it as
`qunliao.sdk`. See docs/sdk.md.
"""

from qunliao_sdk._http import new_txn_id
from qunliao_sdk.client import Client
from qunliao_sdk.errors import QunliaoConnectionError, QunliaoError
from qunliao_sdk.events import (
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
    MessageEvent,
    MessageRecalled,
    Read,
    StateEvent,
    StoredEvent,
    Typing,
    UnknownEvent,
    decode_event,
    register_event_type,
)
from qunliao_sdk.models import RetryPolicy, SendResult, Session, SyncPage
from qunliao_sdk.websocket import WebSocketConnection

__version__ = "0.1.0"

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
    "MessageEvent",
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
