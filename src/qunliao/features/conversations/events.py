"""The conversation stream kind's own event types (messages add theirs: features/messages)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from qunliao.core.events import EventBody
from qunliao.core.streams import EventType


@dataclass(slots=True)
class ConversationCreated(EventBody):
    TYPE: ClassVar[str] = "conversation.created"
    kind: str
    title: str | None
    by: str
    member_ids: list[str]


@dataclass(slots=True)
class ConversationUpdated(EventBody):
    """Only what changed is in the payload: `{"by", "title"?, "announcement"?, …}`."""

    TYPE: ClassVar[str] = "conversation.updated"
    by: str
    changes: dict[str, Any]

    def to_payload(self) -> dict[str, Any]:
        return {"by": self.by, **self.changes}


@dataclass(slots=True)
class MembersAdded(EventBody):
    TYPE: ClassVar[str] = "members.added"
    user_ids: list[str]
    by: str


@dataclass(slots=True)
class MembersRemoved(EventBody):
    TYPE: ClassVar[str] = "members.removed"
    user_ids: list[str]
    by: str
    reason: str  # "left" | "removed"


@dataclass(slots=True)
class MemberUpdated(EventBody):
    TYPE: ClassVar[str] = "member.updated"
    user_id: str
    by: str
    role: str
    muted_until: int | None


@dataclass(slots=True)
class GroupInvitationReceived(EventBody):
    """In the invitee's inbox: someone asked them into a group (they wanted to consent)."""

    TYPE: ClassVar[str] = "group_invitation.received"
    invitation: dict[str, Any]  # as GET /api/v1/group-invitations shows it


@dataclass(slots=True)
class GroupInvitationAnswered(EventBody):
    """In the invitee's inbox (their other devices): accepted or declined. The inviter is not
    told of a decline; an acceptance shows in the group as `members.added`."""

    TYPE: ClassVar[str] = "group_invitation.answered"
    invitation: dict[str, Any]


EVENT_TYPES = (
    EventType(ConversationCreated.TYPE, body=ConversationCreated, changes_audience=True,
              changes_access=True),
    EventType(ConversationUpdated.TYPE, body=ConversationUpdated, changes_access=True),
    EventType(MembersAdded.TYPE, body=MembersAdded, changes_audience=True, changes_access=True),
    EventType(MembersRemoved.TYPE, body=MembersRemoved, changes_audience=True,
              changes_access=True),
    EventType(MemberUpdated.TYPE, body=MemberUpdated, changes_audience=True, changes_access=True),
)  # fmt: skip

# Registered into the inbox stream kind, not the conversation one.
INBOX_EVENT_TYPES = (
    EventType(GroupInvitationReceived.TYPE, body=GroupInvitationReceived),
    EventType(GroupInvitationAnswered.TYPE, body=GroupInvitationAnswered),
)
