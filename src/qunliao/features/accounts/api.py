"""HTTP handlers for accounts, sessions (devices) and profiles."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field

from qunliao.core.addresses import TrustedProxies, client_address
from qunliao.core.http import NAME, AuthDependency, Body, Password, errors, whole_number
from qunliao.core.principal import Principal
from qunliao.features.accounts.invites import MAX_EXPIRES_IN_S, MAX_USES, Invites
from qunliao.features.accounts.service import USERNAME, AccountService


class NewAccount(Body):
    username: str = Field(pattern=USERNAME.pattern)
    password: str = Field(min_length=8, max_length=256)  # ≤ 1024 bytes of UTF-8
    display_name: str = Field(max_length=64, pattern=NAME)
    # Needed when the server's registration policy is "invite"; ignored when it is "open".
    invite_code: str | None = Field(None, max_length=128)


class NewInvite(Body):
    uses: whole_number(1, MAX_USES) = 1  # type: ignore[valid-type]
    expires_in_s: whole_number(1, MAX_EXPIRES_IN_S) | None = None  # type: ignore[valid-type]


class NewSession(Body):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    device_name: str = Field("device", max_length=256)


class ProfileUpdate(Body):
    display_name: str = Field(max_length=64, pattern=NAME)


class PasswordChange(Body):
    current_password: str = Field(max_length=1024)
    new_password: Password


def router(
    accounts: AccountService,
    invites: Invites,
    auth: AuthDependency,
    *,
    trusted: TrustedProxies | None = None,
) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["accounts"])
    Caller = Annotated[Principal, Depends(auth)]
    proxies = trusted or TrustedProxies()

    async def server_admin(caller: Caller) -> Principal:
        await accounts.check_admin(caller)
        return caller

    Admin = Annotated[Principal, Depends(server_admin)]

    def address_of(request: Request) -> str:
        """The client's address, for the per-address limits (behind trusted proxies only)."""
        peer = request.client.host if request.client else None
        return client_address(peer, request.headers, proxies)

    @api.post(
        "/accounts",
        status_code=201,
        summary="Create an account",
        responses=errors(
            403, 409, s409="the username is taken",
            s403="registration is closed, or needs an invite code and this one is missing, "
            "unknown, expired, revoked or used up",
        ),
    )  # fmt: skip
    async def create_account(body: NewAccount, request: Request) -> dict[str, str]:
        user_id = await accounts.do_register(
            body.username,
            body.password,
            body.display_name,
            address=address_of(request),
            invite_code=body.invite_code,
        )
        return {"user_id": user_id}

    @api.post(
        "/admin/invites",
        status_code=201,
        summary="Make a registration invite code (server admins)",
        responses=errors(403, s403="the caller is not a server admin"),
    )
    async def create_invite(body: NewInvite, caller: Admin) -> dict[str, Any]:
        return await invites.do_create(
            created_by=caller.user_id, uses=body.uses, expires_in_s=body.expires_in_s
        )

    @api.get(
        "/admin/invites",
        summary="Registration invites, newest first (server admins)",
        responses=errors(403, s403="the caller is not a server admin"),
    )
    async def list_invites(
        caller: Admin,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        usable: Annotated[bool, Query(description="only those that can still be used")] = False,
    ) -> dict[str, Any]:
        return {"invites": await invites.list_invites(limit=limit, usable_only=usable)}

    @api.delete(
        "/admin/invites/{invite_id}",
        status_code=204,
        summary="Revoke a registration invite (server admins)",
        responses=errors(403, 404, s403="the caller is not a server admin", s404="no such invite"),
    )
    async def revoke_invite(invite_id: str, caller: Admin) -> Response:
        await invites.do_revoke(invite_id)
        return Response(status_code=204)

    @api.post("/sessions", status_code=201, summary="Log in: a new device with its access token",
              responses=errors(401, s401="wrong username or password"))  # fmt: skip
    async def create_session(body: NewSession, request: Request) -> dict[str, str]:
        return await accounts.do_login(
            body.username, body.password, body.device_name, address=address_of(request)
        )

    @api.get("/sessions", summary="My logged-in devices")
    async def list_sessions(caller: Caller) -> dict[str, Any]:
        return {"devices": await accounts.list_devices(caller)}

    @api.delete("/sessions/current", status_code=204, summary="Log out this device")
    async def delete_current(caller: Caller) -> Response:
        await accounts.do_logout(caller)
        return Response(status_code=204)

    @api.delete("/sessions/others", status_code=204, summary="Log out all my other devices")
    async def delete_others(caller: Caller) -> Response:
        await accounts.do_logout_others(caller)
        return Response(status_code=204)

    @api.delete("/sessions/{device_id}", status_code=204, summary="Log out one of my devices",
                responses=errors(404))  # fmt: skip
    async def delete_device(device_id: str, caller: Caller) -> Response:
        await accounts.do_logout(caller, device_id=device_id)
        return Response(status_code=204)

    @api.get("/me", summary="My profile")
    async def me(caller: Caller) -> dict[str, str]:
        profile = await accounts.profile(caller.user_id)
        return {**profile, "device_id": caller.device_id}

    @api.patch("/me", summary="Change my display name")
    async def update_me(body: ProfileUpdate, caller: Caller) -> dict[str, str]:
        return await accounts.do_update_profile(caller, body.display_name)

    @api.post(
        "/me/password",
        status_code=204,
        summary="Change my password (my other devices are logged out)",
        responses=errors(403, s403="the current password is wrong"),
    )
    async def change_password(body: PasswordChange, caller: Caller) -> Response:
        await accounts.do_change_password(caller, body.current_password, body.new_password)
        return Response(status_code=204)

    @api.get("/users/{user_id}", summary="A user's public profile", responses=errors(404))
    async def get_user(user_id: str, caller: Caller) -> dict[str, str]:
        return await accounts.profile(user_id)

    return api
