"""HTTP handlers for conversations, members, roles and ownership."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from pydantic import Field, WithJsonSchema

from qunliao.core.http import AuthDependency, Body, WholeNumber, errors, ok
from qunliao.core.principal import Principal
from qunliao.features.conversations.service import (
    MAX_ANNOUNCEMENT,
    MAX_IDS_PER_REQUEST,
    MAX_TITLE,
    ConversationService,
)

UserId = Annotated[str, Field(min_length=1, max_length=40)]

# 403: not a member (or lacks the role); 404: no such conversation, member or user
MEMBERS_ONLY = errors(403, 404)


class NewDirect(Body):
    kind: Literal["direct"]
    member_ids: list[UserId] = Field(min_length=1, max_length=1)  # the other user, or yourself
    title: None = None  # a direct conversation has no title


class NewGroup(Body):
    kind: Literal["group"]
    member_ids: list[UserId] = Field(default_factory=list, max_length=MAX_IDS_PER_REQUEST)
    title: str | None = Field(None, max_length=MAX_TITLE)


# One schema per kind, so that /openapi.json says what a direct conversation takes.
NewConversation = Annotated[NewDirect | NewGroup, Field(discriminator="kind")]


class ConversationUpdate(Body):
    title: str | None = Field(None, max_length=MAX_TITLE)
    announcement: str | None = Field(None, max_length=MAX_ANNOUNCEMENT)
    # absent: unchanged; null is refused (400), so the document offers true and false only
    muted_all: Annotated[bool | None, WithJsonSchema({"type": "boolean"})] = None


class MembersToAdd(Body):
    user_ids: list[UserId] = Field(min_length=1, max_length=MAX_IDS_PER_REQUEST)


class MemberUpdate(Body):
    role: Literal["admin", "member"] | None = None
    muted_until: WholeNumber | None = None


class Transfer(Body):
    user_id: str = Field(max_length=40)


def router(conversations: ConversationService, auth: AuthDependency) -> APIRouter:
    api = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])
    Caller = Annotated[Principal, Depends(auth)]

    @api.post("", status_code=201, summary="Create a direct or group conversation",
              responses={200: ok("the pair's existing direct conversation"),
                         **errors(403, 404)})  # fmt: skip
    async def create(body: NewConversation, caller: Caller) -> Any:
        conversation_id, created, invited = await conversations.do_create(
            caller, body.kind, body.member_ids, body.title
        )
        return JSONResponse(
            {"conversation_id": conversation_id, "invited": invited},
            status_code=201 if created else 200,
        )

    @api.get("", summary="My conversations, latest activity first")
    async def list_conversations(caller: Caller) -> dict[str, Any]:
        return {"conversations": await conversations.list_conversations(caller)}

    @api.get("/{conversation_id}", summary="One conversation", responses=MEMBERS_ONLY)
    async def get_conversation(conversation_id: str, caller: Caller) -> dict[str, Any]:
        return await conversations.get_conversation(caller, conversation_id)

    @api.patch("/{conversation_id}", summary="Rename, set the announcement, mute all",
               responses=MEMBERS_ONLY)  # fmt: skip
    async def update(
        conversation_id: str, body: ConversationUpdate, caller: Caller
    ) -> dict[str, Any]:
        return await conversations.do_update(
            caller, conversation_id, body.model_dump(exclude_unset=True)
        )

    @api.get("/{conversation_id}/members", summary="Members with roles and read positions",
             responses=MEMBERS_ONLY)  # fmt: skip
    async def members(
        conversation_id: str,
        caller: Caller,
        after: Annotated[str | None, Query(max_length=40)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    ) -> dict[str, Any]:
        return await conversations.list_members(caller, conversation_id, after, limit)

    @api.post("/{conversation_id}/members", summary="Add members to a group",
              responses=MEMBERS_ONLY)  # fmt: skip
    async def add_members(
        conversation_id: str, body: MembersToAdd, caller: Caller
    ) -> dict[str, Any]:
        added, invited = await conversations.do_add_members(caller, conversation_id, body.user_ids)
        return {"added": added, "invited": invited}

    @api.delete(
        "/{conversation_id}/members/{user_id}",
        status_code=204,
        summary="Remove a member (your own id: leave)",
        responses=errors(403, 404, 409, s409="the owner leaves only after a transfer"),
    )
    async def remove_member(conversation_id: str, user_id: str, caller: Caller) -> Response:
        await conversations.do_remove_member(caller, conversation_id, user_id)
        return Response(status_code=204)

    @api.patch("/{conversation_id}/members/{user_id}", summary="Change a member's role or mute",
               responses=MEMBERS_ONLY)  # fmt: skip
    async def update_member(
        conversation_id: str, user_id: str, body: MemberUpdate, caller: Caller
    ) -> dict[str, Any]:
        return await conversations.do_update_member(
            caller, conversation_id, user_id, body.model_dump(exclude_unset=True)
        )

    @api.post("/{conversation_id}/transfer", summary="Transfer group ownership",
              responses=MEMBERS_ONLY)  # fmt: skip
    async def transfer(conversation_id: str, body: Transfer, caller: Caller) -> dict[str, Any]:
        return await conversations.do_transfer(caller, conversation_id, body.user_id)

    return api


def invitations_router(conversations: ConversationService, auth: AuthDependency) -> APIRouter:
    """Group invitations: adds that wait for the invitee's consent (群聊邀请确认)."""
    api = APIRouter(prefix="/api/v1/group-invitations", tags=["conversations"])
    Caller = Annotated[Principal, Depends(auth)]

    @api.get("", summary="My incoming and outgoing group invitations")
    async def list_invitations(caller: Caller) -> dict[str, Any]:
        return await conversations.list_invitations(caller)

    @api.post("/{invitation_id}/accept", summary="Accept a group invitation: join the group",
              responses=errors(403, 404, 409, s403="the inviter may no longer add members",
                               s404="no such invitation, or its group is gone",
                               s409="declined already, or the group is full"))  # fmt: skip
    async def accept(invitation_id: str, caller: Caller) -> dict[str, Any]:
        return await conversations.do_answer_invitation(caller, invitation_id, accept=True)

    @api.post("/{invitation_id}/decline", summary="Decline a group invitation",
              responses=errors(403, 404, 409, s403="only the invitee answers",
                               s404="no such invitation", s409="accepted already"))  # fmt: skip
    async def decline(invitation_id: str, caller: Caller) -> dict[str, Any]:
        return await conversations.do_answer_invitation(caller, invitation_id, accept=False)

    return api
