"""Contacts' event types, delivered to users' inboxes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from qunliao.core.events import EventBody
from qunliao.core.streams import EventType


@dataclass(slots=True)
class FriendRequestReceived(EventBody):
    TYPE: ClassVar[str] = "friend_request.received"
    request: dict[str, Any]  # as GET /api/v1/contacts/requests shows it


@dataclass(slots=True)
class FriendRequestAccepted(EventBody):
    """In both users' inboxes."""

    TYPE: ClassVar[str] = "friend_request.accepted"
    request: dict[str, Any]


EVENT_TYPES = (
    EventType(FriendRequestReceived.TYPE, body=FriendRequestReceived),
    EventType(FriendRequestAccepted.TYPE, body=FriendRequestAccepted),
)
