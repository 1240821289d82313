"""Builds the app: settings → storage → bus → services → HTTP routes. The one place that wires."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from argon2 import PasswordHasher
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from qunliao import __version__
from qunliao.core.clock import Clock, SystemClock
from qunliao.core.errors import ApiError
from qunliao.core.events import StoredEvent
from qunliao.core.http import PRINCIPAL_SCOPE_KEY, bearer_token
from qunliao.core.ids import IdGenerator
from qunliao.core.principal import Principal
from qunliao.core.ratelimit import RateLimiter
from qunliao.core.streams import Registry
from qunliao.features.accounts import api as accounts_api
from qunliao.features.accounts.service import AccountService
from qunliao.features.contacts import api as contacts_api
from qunliao.features.contacts.service import ContactService
from qunliao.features.conversations import api as conversations_api
from qunliao.features.conversations.service import ConversationService
from qunliao.features.idempotency.api import IdempotencyMiddleware
from qunliao.features.idempotency.service import IdempotencyService
from qunliao.features.inbox import InboxService
from qunliao.features.messages import api as messages_api
from qunliao.features.messages.service import MessageService, same_send
from qunliao.features.sync import api as sync_api
from qunliao.features.sync.service import SyncService
from qunliao.metrics import Metrics
from qunliao.realtime.asgi_socket import WebSocketFastPath
from qunliao.realtime.bus import make_bus
from qunliao.realtime.fast_ws import STATE_KEY, WebSocketRoute
from qunliao.realtime.gateway import Gateway, GatewayHandlers
from qunliao.realtime.hub import Hub
from qunliao.settings import Settings
from qunliao.storage import eventlog
from qunliao.storage.db import Database
from qunliao.storage.group_commit import GroupCommit
from qunliao.storage.migrate import migrate
from qunliao.webclient import mount_web_client

log = logging.getLogger("qunliao")
WS_PATH = "/api/v1/ws"

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "bad_request",
    409: "conflict",
    413: "too_large",
    415: "bad_request",
    429: "rate_limited",
    503: "unavailable",
}


class ORJSONResponse(JSONResponse):
    """JSON responses through orjson (UTF-8, no ASCII escaping of 中文)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class LogSource:
    """What the hub reads: the whole event log in position order."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def events_after(self, pos: int, limit: int) -> list[StoredEvent]:
        async with self._db.read() as conn:
            return await eventlog.events_after(conn, pos, limit)

    async def max_position(self) -> int:
        async with self._db.read() as conn:
            return await eventlog.max_position(conn)


@dataclass
class Services:
    settings: Settings
    db: Database
    hub: Hub
    writer: GroupCommit
    gateway: Gateway
    registry: Registry
    accounts: AccountService
    contacts: ContactService
    conversations: ConversationService
    messages: MessageService
    sync: SyncService
    metrics: Metrics
    clock: Clock


def error_response(error: ApiError) -> Response:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, int(error.retry_after + 0.999)))
    return ORJSONResponse(error.to_json(), status_code=error.status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(problems) or "invalid request"


def build_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    ids: IdGenerator | None = None,
    password_hasher: PasswordHasher | None = None,
) -> Services:
    clock = clock or SystemClock()
    ids = ids or IdGenerator(clock.now_ms)
    metrics = Metrics()
    db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    registry = Registry()
    log = eventlog.EventLog(registry.append_hooks)
    hub = Hub(
        LogSource(db),
        make_bus(settings.bus_url),
        registry,
        poll_interval_s=settings.poll_interval_ms / 1000,
        now_ms=clock.now_ms,
        on_lag=metrics.delivery_lag.observe,
    )

    def on_committed(events: Sequence[StoredEvent]) -> None:
        hub.committed(events)

    def on_batch(size: int, seconds: float) -> None:
        metrics.commit_batch.observe(size)
        metrics.commit_seconds.observe(seconds)

    writer = GroupCommit(
        db, clock, on_committed, hooks=registry.append_hooks, same_send=same_send,
        on_batch=on_batch,
    )  # fmt: skip
    limiter = RateLimiter(clock, settings.rate_limit_per_s, settings.rate_limit_burst)
    accounts = AccountService(db, clock, ids, hub.revoke_devices, hasher=password_hasher)
    inbox = InboxService(clock, log, on_committed)
    contacts = ContactService(db, clock, ids, accounts, inbox)
    conversations = ConversationService(
        db,
        clock,
        ids,
        accounts,
        contacts,
        log,
        on_committed,
        max_group_members=settings.max_group_members,
    )
    messages = MessageService(
        db,
        clock,
        ids,
        writer,
        conversations,
        contacts,
        log,
        limiter,
        on_committed,
        hub.broadcast_state,
        recall_window_s=settings.recall_window_s,
        edit_window_s=settings.edit_window_s,
    )
    # The stream kinds, their event types and frames: what sync, the hub and the gateway serve.
    registry.add_kind(conversations.stream_kind())
    registry.add_kind(inbox.stream_kind())
    contacts.register(registry)
    messages.register(registry)
    sync = SyncService(db, hub, registry, observe=metrics.sync_seconds.observe)
    gateway = Gateway(
        hub,
        GatewayHandlers(accounts.authenticate, sync.events_for_user, registry),
        queue_limit=settings.ws_queue_limit,
        max_connections=settings.max_connections,
        max_per_ip=settings.max_connections_per_ip,
        ping_interval_s=settings.ws_ping_interval_s,
    )
    _register_readings(metrics, hub, writer, gateway)
    return Services(
        settings,
        db,
        hub,
        writer,
        gateway,
        registry,
        accounts,
        contacts,
        conversations,
        messages,
        sync,
        metrics,
        clock,
    )


def _register_readings(metrics: Metrics, hub: Hub, writer: GroupCommit, gateway: Gateway) -> None:
    metrics.counter("qunliao_messages_committed", "Messages stored by group commit",
                    lambda: writer.committed)  # fmt: skip
    metrics.counter("qunliao_commit_batches", "Group-commit transactions", lambda: writer.batches)
    metrics.counter("qunliao_deliveries", "Events handed to sockets", lambda: hub.delivered)
    metrics.counter("qunliao_hub_database_reads", "Hub reads that found events in the database",
                    lambda: hub.polls_found)  # fmt: skip
    metrics.gauge("qunliao_ws_connections", "Open WebSocket connections",
                  lambda: gateway.connections)  # fmt: skip
    metrics.counter("qunliao_ws_refused", "WebSocket connections refused by the limits",
                    lambda: gateway.refused)  # fmt: skip
    metrics.gauge("qunliao_bus_healthy", "1 while the bus is connected", lambda: hub.bus_healthy)
    metrics.gauge("qunliao_hub_position", "Last global position delivered", lambda: hub.pos)


def create_app(
    settings: Settings, *, services: Services | None = None, auto_migrate: bool = True
) -> FastAPI:
    svc = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        if auto_migrate:
            await migrate(settings.database_url)
        await svc.db.start()
        await svc.hub.start()
        svc.writer.start()
        svc.gateway.start()
        log.info(
            "qunliao %s serving on %s (bus %s)",
            __version__,
            svc.db.dialect,
            settings.bus_url.split("://")[0],
        )
        try:
            # uvicorn hands this state to each connection's protocol (realtime/fast_ws.py).
            yield {STATE_KEY: WebSocketRoute(WS_PATH, svc.gateway.endpoint)}
        finally:
            svc.gateway.close_all()
            await svc.gateway.stop()
            await svc.writer.stop()
            await svc.hub.stop()
            await svc.db.close()
            log.info("qunliao stopped cleanly (%d messages committed)", svc.writer.committed)

    app = FastAPI(
        title="qunliao",
        version=__version__,
        description="群聊 — self-hostable messaging. Errors: "
        '`{"error": {"code", "message"}}`. WebSocket: see docs/api.md.',
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
    )
    app.state.services = svc

    @app.exception_handler(ApiError)
    async def on_api_error(_request: Request, exc: ApiError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_request: Request, exc: RequestValidationError) -> Response:
        return error_response(ApiError("bad_request", _validation_message(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_request: Request, exc: StarletteHTTPException) -> Response:
        code = STATUS_CODES.get(exc.status_code, "bad_request")
        message = exc.detail if isinstance(exc.detail, str) else code
        error = ApiError(code, message)
        return ORJSONResponse(error.to_json(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def on_crash(_request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(
            {"error": {"code": "internal", "message": "internal error"}}, status_code=500
        )

    async def auth(request: Request) -> Principal:
        already = request.scope.get(PRINCIPAL_SCOPE_KEY)  # set by the idempotency middleware
        if isinstance(already, Principal):
            return already
        token = bearer_token(request.headers.get("authorization", ""))
        return await svc.accounts.access_token(token)

    @app.get("/healthz", tags=["health"], summary="Readiness: the database answers")
    async def healthz() -> Any:
        ok = await svc.db.ping()
        body = {
            "status": "ok" if ok else "unavailable",
            "database": svc.db.dialect if ok else "down",
            "bus": {"kind": settings.bus_url.split("://")[0], "healthy": svc.hub.bus_healthy},
            "connections": svc.gateway.connections,
            "position": svc.hub.pos,
        }
        return ORJSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics of this process")
    async def metrics() -> Response:
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(accounts_api.router(svc.accounts, auth))
    app.include_router(contacts_api.router(svc.contacts, auth))
    app.include_router(conversations_api.router(svc.conversations, auth))
    app.include_router(messages_api.router(svc.messages, auth))
    app.include_router(sync_api.router(svc.sync, auth))

    async def error_answer(error: ApiError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        response = error_response(error)
        headers = [(k, v) for k, v in response.raw_headers if k != b"content-length"]
        return response.status_code, bytes(response.body), headers

    app.add_middleware(
        IdempotencyMiddleware,
        service=IdempotencyService(svc.db, svc.clock),
        authenticate=svc.accounts.authenticate,
        on_error=error_answer,
    )
    # The WebSocket bypasses Starlette's per-message wrappers: it is the hot path.
    app.add_middleware(WebSocketFastPath, path=WS_PATH, handler=svc.gateway.endpoint)
    mount_web_client(app)
    return app
