"""HTTP handler for sync (long-poll)."""

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from qunliao.core.http import AuthDependency
from qunliao.core.principal import Principal
from qunliao.features.sync.service import SyncService


def router(sync: SyncService, auth: AuthDependency) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["sync"])

    @api.get(
        "/sync",
        summary="Events since a token, exactly once, in order; long-polls",
        response_model=dict[str, Any],  # for OpenAPI: the answer below skips re-validation
    )
    async def get_sync(
        caller: Annotated[Principal, Depends(auth)],
        since: Annotated[str | None, Query(max_length=200)] = None,
        timeout_ms: Annotated[int, Query(ge=0, le=30_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        # Up to 1,000 events: encoded once by orjson, not walked by FastAPI's encoder first.
        body = orjson.dumps(await sync.sync(caller, since, timeout_ms, limit))
        return Response(body, media_type="application/json")

    return api
