"""HTTP handlers for server admins: accounts and the audit log (others get 403)."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from qunliao.core.http import AuthDependency, Body, Password, errors
from qunliao.core.principal import Principal
from qunliao.features.admin.service import AdminService

# 400 and 401 are added to every operation that takes a token (core/openapi.py).
ADMIN_ERRORS = errors(403, s403="the caller is not a server admin")
ON_USER = errors(403, 404, s403="the caller is not a server admin", s404="no such user")


class NewPassword(Body):
    new_password: Password


def admin_dependency(
    admin: AdminService, auth: AuthDependency
) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the caller, when a server admin (401 without a token, else 403)."""

    async def require_admin(caller: Annotated[Principal, Depends(auth)]) -> Principal:
        await admin.access_admin(caller)
        return caller

    return require_admin


def router(admin: AdminService, auth: AuthDependency) -> APIRouter:
    api = APIRouter(prefix="/api/v1/admin", tags=["admin"])
    Admin = Annotated[Principal, Depends(admin_dependency(admin, auth))]

    @api.get("/users", summary="Accounts by username (server admins)", responses=ADMIN_ERRORS)
    async def list_users(
        caller: Admin,
        q: Annotated[str, Query(max_length=64)] = "",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        return await admin.list_users(caller, q, limit, cursor)

    @api.post(
        "/users/{user_id}/deactivate",
        status_code=204,
        summary="Deactivate an account: all its sessions end, it cannot log in",
        responses=ON_USER,
    )
    async def deactivate(user_id: str, caller: Admin) -> Response:
        await admin.do_deactivate(caller, user_id)
        return Response(status_code=204)

    @api.post(
        "/users/{user_id}/reactivate",
        status_code=204,
        summary="Let a deactivated account log in again",
        responses=ON_USER,
    )
    async def reactivate(user_id: str, caller: Admin) -> Response:
        await admin.do_reactivate(caller, user_id)
        return Response(status_code=204)

    @api.post(
        "/users/{user_id}/password",
        status_code=204,
        summary="Set an account's password: all its sessions end",
        responses=ON_USER,
    )
    async def reset_password(user_id: str, body: NewPassword, caller: Admin) -> Response:
        await admin.do_reset_password(caller, user_id, body.new_password)
        return Response(status_code=204)

    @api.get("/audit", summary="The admin audit log, newest first", responses=ADMIN_ERRORS)
    async def audit(
        caller: Admin,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        return await admin.audit(caller, limit, cursor)

    return api
