"""Builds the app: settings → storage → bus → services → HTTP routes. The one place that wires."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
from argon2 import PasswordHasher
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from qunliao import __version__
from qunliao.core.clock import Clock, SystemClock
from qunliao.core.errors import ApiError
from qunliao.core.events import StoredEvent
from qunliao.core.http import (
    PRINCIPAL_SCOPE_KEY,
    allowed_methods,
    bearer_token,
    errors,
    has_nul,
    ok,
)
from qunliao.core.ids import IdGenerator
from qunliao.core.openapi import install_openapi
from qunliao.core.principal import Principal
from qunliao.core.ratelimit import RateLimiter
from qunliao.core.streams import Registry
from qunliao.features import (
    accounts,
    admin,
    contacts,
    conversations,
    idempotency,
    inbox,
    messages,
    sync,
)
from qunliao.features.wiring import Step, Wiring
from qunliao.metrics import Metrics
from qunliao.observe import ObserveRequests
from qunliao.realtime.asgi_socket import WebSocketFastPath
from qunliao.realtime.bus import make_bus
from qunliao.realtime.connections import GATE_KEY, ConnectionGate
from qunliao.realtime.fast_ws import STATE_KEY, WebSocketRoute
from qunliao.realtime.gateway import Gateway, GatewayHandlers
from qunliao.realtime.hub import Hub
from qunliao.settings import Settings
from qunliao.storage import eventlog
from qunliao.storage.db import Database
from qunliao.storage.migrate import migrate
from qunliao.webclient import mount_api_docs, mount_web_client

T = TypeVar("T")
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


# The features, in the order they are installed (each may need the ones before it). A new
# feature is its folder under features/ and one line here.
FEATURES = (accounts, admin, inbox, contacts, conversations, messages, sync, idempotency)


@dataclass
class Services:
    settings: Settings
    db: Database
    hub: Hub
    gateway: Gateway
    registry: Registry
    metrics: Metrics
    clock: Clock
    wiring: Wiring

    def need(self, kind: type[T]) -> T:
        """A feature's service (for the CLI and tests)."""
        return self.wiring.need(kind)


def error_response(error: ApiError) -> Response:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, int(error.retry_after + 0.999)))
    return ORJSONResponse(error.to_json(), status_code=error.status, headers=headers)


async def error_answer(error: ApiError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """An error as (status, body, headers), for ASGI middleware that answers by itself."""
    response = error_response(error)
    headers = [(k, v) for k, v in response.raw_headers if k != b"content-length"]
    return response.status_code, bytes(response.body), headers


async def _run(step: Step) -> None:
    result = step()
    if inspect.isawaitable(result):
        await result


class BodyLimit:
    """HTTP bodies over `max_bytes` are 413 before they are read whole: from Content-Length at
    once, else when the streamed body passes the limit (a 512 MB registration once took the
    process to 1.7 GB)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        too_large = ApiError("too_large", f"the request body is over {self._max} bytes")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit() or int(value) > self._max:
                    await _send_error(send, too_large if value.isdigit() else bad_length())
                    return
        seen = 0
        started = answered = False

        async def counted() -> Any:
            nonlocal seen, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max and not started:
                    # Answer now, and tell the app the client left: it stops reading.
                    answered = True
                    await _send_error(send, too_large)
                    return {"type": "http.disconnect"}
            return message

        async def watched(message: Any) -> None:
            nonlocal started
            if answered:
                return  # the 413 went out already; whatever the app says after it is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self._app(scope, counted, watched)


def bad_length() -> ApiError:
    return ApiError("bad_request", "Content-Length is not a number")


async def _send_error(send: Any, error: ApiError) -> None:
    status, body, headers = await error_answer(error)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class NulGuard:
    """U+0000 in a path or query string is refused with 400 before routing (PostgreSQL cannot
    store it, so it would otherwise reach the database as an error)."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and has_nul(scope["path"], scope.get("query_string", b"")):
            await _send_error(send, ApiError("bad_request", "the path or query contains U+0000"))
            return
        await self._app(scope, receive, send)


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
    # rate_limits = "off" (load tests, benchmarks) lifts every limit: 0 is no limit here.
    send_rate = settings.rate_limit_per_s if settings.rate_limits == "on" else 0
    hub = Hub(
        LogSource(db),
        make_bus(settings.bus_url),
        registry,
        poll_interval_s=settings.poll_interval_ms / 1000,
        now_ms=clock.now_ms,
        on_lag=metrics.delivery_lag.observe,
    )
    wiring = Wiring(
        settings, db, clock, ids, metrics, registry, eventlog.EventLog(registry.append_hooks), hub,
        RateLimiter(clock, send_rate, settings.rate_limit_burst), error_answer,
        password_hasher,
    )  # fmt: skip
    for feature in FEATURES:
        feature.install(wiring)
    if wiring.authenticate is None or wiring.catch_up is None:
        raise LookupError("FEATURES must install accounts (who holds a token) and sync")
    gateway = Gateway(
        hub,
        GatewayHandlers(wiring.authenticate, wiring.catch_up, registry),
        queue_limit=settings.ws_queue_limit,
        max_connections=settings.max_connections,
        max_per_ip=settings.max_connections_per_ip,
        ping_interval_s=settings.ws_ping_interval_s,
        exempt=settings.proxies().__contains__,
    )
    _register_readings(metrics, hub, gateway)
    return Services(settings, db, hub, gateway, registry, metrics, clock, wiring)


def _register_readings(metrics: Metrics, hub: Hub, gateway: Gateway) -> None:
    metrics.counter("qunliao_deliveries", "Events handed to sockets", lambda: hub.delivered)
    metrics.counter("qunliao_hub_database_reads", "Hub reads that found events in the database",
                    lambda: hub.polls_found)  # fmt: skip
    metrics.gauge("qunliao_ws_connections", "Open WebSocket connections",
                  lambda: gateway.connections)  # fmt: skip
    metrics.counter("qunliao_ws_refused", "WebSocket connections refused by the limits",
                    lambda: gateway.refused)  # fmt: skip
    # Across workers: 0 when any worker has lost the bus; the furthest position delivered.
    metrics.gauge("qunliao_bus_healthy", "1 while the bus is connected", lambda: hub.bus_healthy,
                  merge="min")  # fmt: skip
    metrics.gauge("qunliao_hub_position", "Last global position delivered", lambda: hub.pos,
                  merge="max")  # fmt: skip


def _text_too_long(exc: RequestValidationError) -> bool:
    """Only a message text over its length: the body's `text`, refused for length alone."""
    errors = exc.errors()
    return bool(errors) and all(
        e.get("type") == "string_too_long" and tuple(e.get("loc", ()))[-2:] == ("body", "text")
        for e in errors
    )


def frame_budget(settings: Settings) -> tuple[float, float]:
    """Frames per second (and in a burst) one WebSocket may send: twice the request limit,
    since reads and typing frames come with the sends. (0, 0) when rate limits are off."""
    if settings.rate_limit_per_s <= 0 or settings.rate_limits == "off":
        return (0.0, 0.0)
    return (2 * settings.rate_limit_per_s, 2 * settings.rate_limit_burst)


def create_app(
    settings: Settings,
    *,
    services: Services | None = None,
    auto_migrate: bool = True,
    metrics_dir: Path | None = None,
) -> FastAPI:
    """`metrics_dir`: where `qunliao serve` gathers its workers' metrics (metrics_workers.py)."""
    svc = services or build_services(settings)
    if metrics_dir is not None:
        svc.metrics.share(metrics_dir)
    access_token = svc.wiring.access_token
    if access_token is None:
        raise LookupError("FEATURES must install accounts (who holds a token)")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        if auto_migrate:
            await migrate(settings.database_url)
        await svc.db.start()
        await svc.hub.start()
        for step in svc.wiring.starts:
            await _run(step)
        svc.gateway.start()
        log.info(
            "qunliao %s serving on %s (bus %s)",
            __version__,
            svc.db.dialect,
            settings.bus_url.split("://")[0],
        )
        gate = ConnectionGate(
            settings.max_connections,
            settings.max_connections_per_ip,
            exempt=settings.proxies().__contains__,  # a proxy carries many clients' connections
            request_timeout_s=settings.request_timeout_s,
        )
        svc.metrics.gauge("qunliao_connections", "Open TCP connections (HTTP and WebSocket)",
                          lambda: gate.open)  # fmt: skip
        svc.metrics.counter("qunliao_connections_refused", "Connections refused by the caps",
                            lambda: gate.refused)  # fmt: skip
        shared = svc.metrics.shared
        publishing = asyncio.create_task(shared.run()) if shared is not None else None
        try:
            # uvicorn hands this state to each connection's protocol (realtime/fast_ws.py).
            yield {
                STATE_KEY: WebSocketRoute(WS_PATH, svc.gateway.endpoint, frame_budget(settings)),
                GATE_KEY: gate,
            }
        finally:
            if publishing is not None:
                publishing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publishing
            svc.gateway.close_all()
            await svc.gateway.stop()
            for step in reversed(svc.wiring.stops):
                await _run(step)
            await svc.hub.stop()
            await svc.db.close()
            log.info("qunliao stopped cleanly")

    app = FastAPI(
        title="qunliao",
        version=__version__,
        description="群聊 — self-hostable messaging. Errors: "
        '`{"error": {"code", "message"}}`. WebSocket: see docs/api.md.',
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
        docs_url=None,  # served from the package's own files: mount_api_docs
        redoc_url=None,
    )
    app.state.services = svc

    @app.exception_handler(ApiError)
    async def on_api_error(_request: Request, exc: ApiError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_request: Request, exc: RequestValidationError) -> Response:
        if _text_too_long(exc):  # API.md: a message text too long is 413, not 400
            return error_response(ApiError("too_large", "text is too long"))
        return error_response(ApiError("bad_request", _validation_message(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        code = STATUS_CODES.get(exc.status_code, "bad_request")
        message = exc.detail if isinstance(exc.detail, str) else code
        error = ApiError(code, message)
        headers = exc.headers
        if exc.status_code == 405:  # RFC 9110: a 405 lists what the path takes
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request.scope))}
        return ORJSONResponse(error.to_json(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def on_crash(_request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(
            {"error": {"code": "internal", "message": "internal error"}}, status_code=500
        )

    # Declared through HTTPBearer so that /openapi.json marks each route that takes a token
    # (core/openapi.py adds their 401); the token itself is read below.
    bearer = HTTPBearer(auto_error=False, scheme_name="bearer")

    async def auth(request: Request, _declared: Any = Depends(bearer)) -> Principal:
        already = request.scope.get(PRINCIPAL_SCOPE_KEY)  # set by the idempotency middleware
        if isinstance(already, Principal):
            return already
        token = bearer_token(request.headers.get("authorization", ""))
        principal = await access_token(token)
        request.scope[PRINCIPAL_SCOPE_KEY] = principal  # for the access log
        return principal

    @app.get("/healthz", tags=["health"], summary="Readiness: the database answers",
             responses={503: ok("not ready: the database does not answer")})  # fmt: skip
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

    @app.get("/api/v1/server", tags=["health"], summary="About this server (no sign-in needed)")
    async def server_info() -> dict[str, str]:
        # What a client needs before anyone signs in: whether its sign-up form asks for an
        # invite code (registration "invite") or is shut (registration "closed").
        return {"registration": settings.registration, "version": __version__}

    metrics_token = settings.metrics_token.encode()

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics of every worker (needs metrics_token)",
        responses={
            200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"},
            **errors(
                401,
                404,
                s401="no or wrong `Authorization: Bearer` token",
                s404="no metrics_token, or metrics_listen is set",
            ),
        },
    )
    async def metrics(request: Request) -> Response:
        if settings.metrics_listen or not metrics_token:
            raise ApiError("not_found", "Not Found")  # as for any unknown path
        given = bearer_token(request.headers.get("authorization", "")) or ""
        if not hmac.compare_digest(given.encode(), metrics_token):
            raise ApiError("unauthorized", "/metrics needs Authorization: Bearer <metrics_token>")
        # Reading the other workers' snapshots is file I/O: off the event loop.
        return Response(await asyncio.to_thread(svc.metrics.render), media_type=CONTENT_TYPE_LATEST)

    for make_router in svc.wiring.routers:
        app.include_router(make_router(auth))
    install_openapi(app, svc.wiring.secret_answers)
    for middleware, options in svc.wiring.middleware:
        app.add_middleware(middleware, **options)

    app.add_middleware(NulGuard)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # The WebSocket bypasses Starlette's per-message wrappers: it is the hot path.
    app.add_middleware(WebSocketFastPath, path=WS_PATH, handler=svc.gateway.endpoint)
    # Outermost, so that answers given before routing (413, NUL bytes) are counted too.
    app.add_middleware(
        ObserveRequests,
        metrics=svc.metrics,
        log_requests=settings.access_log == "on",
        proxies=settings.proxies(),
    )
    mount_api_docs(app)
    mount_web_client(app)
    return app
