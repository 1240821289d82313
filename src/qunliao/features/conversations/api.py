"""HTTP handlers for conversations, members, roles and ownership."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from qunliao.core.http import AuthDependency, Body
from qunliao.core.principal import Principal
from qunliao.features.conversations.service import ConversationService


class NewConversation(Body):
    kind: Literal["direct", "group"]
    member_ids: list[str] = Field(default_factory=list, max_length=10_000)
    title: str | None = Field(None, max_length=1000)


class ConversationUpdate(Body):
    title: str | None = Field(None, max_length=1000)
    announcement: str | None = Field(None, max_length=100_000)
    muted_all: bool | None = None


class MembersToAdd(Body):
    user_ids: list[str] = Field(max_length=10_000)


class MemberUpdate(Body):
    role: Literal["admin", "member"] | None = None
    muted_until: int | None = Field(None, ge=0, le=2**62)


class Transfer(Body):
    user_id: str = Field(max_length=40)


def router(conversations: ConversationService, auth: AuthDependency) -> APIRouter:
    api = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])
    Caller = Annotated[Principal, Depends(auth)]

    @api.post("", status_code=201, summary="Create a direct or group conversation")
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

    @api.get("/{conversation_id}", summary="One conversation")
    async def get_conversation(conversation_id: str, caller: Caller) -> dict[str, Any]:
        return await conversations.get_conversation(caller, conversation_id)

    @api.patch("/{conversation_id}", summary="Rename, set the announcement, mute all")
    async def update(
        conversation_id: str, body: ConversationUpdate, caller: Caller
    ) -> dict[str, Any]:
        return await conversations.do_update(
            caller, conversation_id, body.model_dump(exclude_unset=True)
        )

    @api.get("/{conversation_id}/members", summary="Members with roles and read positions")
    async def members(
        conversation_id: str,
        caller: Caller,
        after: Annotated[str | None, Query(max_length=40)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    ) -> dict[str, Any]:
        return await conversations.list_members(caller, conversation_id, after, limit)

    @api.post("/{conversation_id}/members", summary="Add members to a group")
    async def add_members(
        conversation_id: str, body: MembersToAdd, caller: Caller
    ) -> dict[str, Any]:
        added, invited = await conversations.do_add_members(caller, conversation_id, body.user_ids)
        return {"added": added, "invited": invited}

    @api.delete(
        "/{conversation_id}/members/{user_id}",
        status_code=204,
        summary="Remove a member (your own id: leave)",
    )
    async def remove_member(conversation_id: str, user_id: str, caller: Caller) -> Response:
        await conversations.do_remove_member(caller, conversation_id, user_id)
        return Response(status_code=204)

    @api.patch("/{conversation_id}/members/{user_id}", summary="Change a member's role or mute")
    async def update_member(
        conversation_id: str, user_id: str, body: MemberUpdate, caller: Caller
    ) -> dict[str, Any]:
        return await conversations.do_update_member(
            caller, conversation_id, user_id, body.model_dump(exclude_unset=True)
        )

    @api.post("/{conversation_id}/transfer", summary="Transfer group ownership")
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

    @api.post("/{invitation_id}/accept", summary="Accept a group invitation: join the group")
    async def accept(invitation_id: str, caller: Caller) -> dict[str, Any]:
        return await conversations.do_answer_invitation(caller, invitation_id, accept=True)

    @api.post("/{invitation_id}/decline", summary="Decline a group invitation")
    async def decline(invitation_id: str, caller: Caller) -> dict[str, Any]:
        return await conversations.do_answer_invitation(caller, invitation_id, accept=False)

    return api
