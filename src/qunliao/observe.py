"""Every HTTP request counted (`qunliao_http_requests_total`, the latency histogram) and written
to the access log: method, route template, status, duration, user id and client address.

Never the raw path or query string: `/api/v1/ws?access_token=…` is how a browser's WebSocket
authenticates, and ids in paths would make a label per conversation. A pure ASGI middleware on
the hot path: per request one closure, one clock read at each end, one dict lookup.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.routing import Mount

from qunliao.core.addresses import TrustedProxies, client_address
from qunliao.core.http import PRINCIPAL_SCOPE_KEY
from qunliao.core.principal import Principal
from qunliao.metrics import Metrics

access_log = logging.getLogger("qunliao.access")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# One label for every request no route took: unknown paths, and answers given before routing
# (413 from Content-Length, 400 for a NUL byte).
UNMATCHED = "unmatched"
# Probes and scrapes come every few seconds; they go to the access log at DEBUG.
QUIET_ROUTES = frozenset({"/healthz", "/metrics"})


class ObserveRequests:
    def __init__(
        self,
        app: Any,
        metrics: Metrics,
        *,
        log_requests: bool,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self._app = app
        self._metrics = metrics
        self._log_requests = log_requests
        self._proxies = proxies or TrustedProxies()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def observed(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, observed)
        finally:
            self._done(scope, status, time.perf_counter() - started)

    def _done(self, scope: Any, status: int, seconds: float) -> None:
        method = scope["method"]
        if method not in METHODS:
            method = "OTHER"
        route = self._route_of(scope)
        self._metrics.http_request(method, route, status, seconds)
        if self._log_requests:
            self._log(scope, method, route, status, seconds)

    @staticmethod
    def _route_of(scope: Any) -> str:
        # The router leaves the route it took in the scope (the same dict we passed on).
        route = scope.get("route")
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            return UNMATCHED
        return path + "/{path}" if isinstance(route, Mount) else path

    def _log(self, scope: Any, method: str, route: str, status: int, seconds: float) -> None:
        level = logging.DEBUG if route in QUIET_ROUTES and status < 400 else logging.INFO
        if not access_log.isEnabledFor(level):
            return
        principal = scope.get(PRINCIPAL_SCOPE_KEY)
        user_id = principal.user_id if isinstance(principal, Principal) else None
        peer = scope.get("client")
        client = peer[0] if peer else "-"
        if self._proxies and peer:
            client = client_address(peer[0], scope.get("headers", ()), self._proxies)
        milliseconds = round(seconds * 1000, 2)
        access_log.log(
            level,
            "%s %s %d %.2fms user=%s client=%s",
            method, route, status, milliseconds, user_id or "-", client,
            extra={
                "method": method, "route": route, "status": status,
                "duration_ms": milliseconds, "user_id": user_id, "client": client,
            },
        )  # fmt: skip
