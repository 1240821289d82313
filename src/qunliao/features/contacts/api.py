"""HTTP handlers for friend requests, contacts, remarks, blocks and user search."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from qunliao.core.http import AuthDependency, Body, errors, ok
from qunliao.core.principal import Principal
from qunliao.features.contacts.service import ContactService


class NewFriendRequest(Body):
    user_id: str = Field(max_length=40)
    note: str = Field("", max_length=200)


class ContactUpdate(Body):
    remark: str = Field(max_length=64)


class SettingsUpdate(Body):
    """Only the fields sent change (a PATCH); none may be null."""

    group_invite_consent: bool = False


def router(contacts: ContactService, auth: AuthDependency) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["contacts"])
    Caller = Annotated[Principal, Depends(auth)]

    @api.post("/friend-requests", status_code=201, summary="Send a friend request",
              responses={200: ok("the pending request between the two, unchanged"),
                         **errors(403, 404, 409)})  # fmt: skip
    async def send_request(body: NewFriendRequest, caller: Caller) -> Any:
        request, created = await contacts.do_request(caller, body.user_id, body.note)
        return JSONResponse(
            {"request_id": request["request_id"], "status": request["status"], **request},
            status_code=201 if created else 200,
        )

    @api.get("/friend-requests", summary="My incoming and outgoing friend requests")
    async def list_requests(caller: Caller) -> dict[str, Any]:
        return await contacts.list_requests(caller)

    @api.post("/friend-requests/{request_id}/accept", summary="Accept a friend request",
              responses=errors(403, 404, 409))  # fmt: skip
    async def accept(request_id: str, caller: Caller) -> dict[str, Any]:
        return await contacts.do_answer(caller, request_id, accept=True)

    @api.post("/friend-requests/{request_id}/decline", summary="Decline a friend request",
              responses=errors(403, 404, 409))  # fmt: skip
    async def decline(request_id: str, caller: Caller) -> dict[str, Any]:
        return await contacts.do_answer(caller, request_id, accept=False)

    @api.get("/contacts", summary="My contacts")
    async def list_contacts(caller: Caller) -> dict[str, Any]:
        return {"contacts": await contacts.list_contacts(caller)}

    @api.patch(
        "/contacts/{user_id}", summary="Set a contact's remark (备注)", responses=errors(404)
    )
    async def update_contact(user_id: str, body: ContactUpdate, caller: Caller) -> dict[str, Any]:
        return await contacts.do_set_remark(caller, user_id, body.remark)

    @api.delete("/contacts/{user_id}", status_code=204, summary="Remove a contact",
                responses=errors(404))  # fmt: skip
    async def remove_contact(user_id: str, caller: Caller) -> Response:
        await contacts.do_remove_contact(caller, user_id)
        return Response(status_code=204)

    @api.get("/blocks", summary="Users I blocked")
    async def list_blocks(caller: Caller) -> dict[str, Any]:
        return {"user_ids": await contacts.blocked(caller)}

    @api.put("/blocks/{user_id}", status_code=204, summary="Block a user", responses=errors(404))
    async def block(user_id: str, caller: Caller) -> Response:
        await contacts.do_block(caller, user_id)
        return Response(status_code=204)

    @api.delete("/blocks/{user_id}", status_code=204, summary="Unblock a user")
    async def unblock(user_id: str, caller: Caller) -> Response:
        await contacts.do_unblock(caller, user_id)
        return Response(status_code=204)

    @api.get("/me/settings", summary="My privacy settings")
    async def get_settings(caller: Caller) -> dict[str, Any]:
        return await contacts.settings(caller)

    @api.patch("/me/settings", summary="Change my privacy settings (group invitation consent)")
    async def update_settings(body: SettingsUpdate, caller: Caller) -> dict[str, Any]:
        return await contacts.do_update_settings(caller, body.model_dump(exclude_unset=True))

    @api.get("/users", summary="Search users by username or display name (中文 too)")
    async def search_users(
        caller: Caller,
        q: Annotated[str, Query(max_length=64)] = "",
        limit: Annotated[int, Query(ge=1, le=50)] = 20,
    ) -> dict[str, Any]:
        return {"users": await contacts.search_users(caller, q, limit)}

    return api
