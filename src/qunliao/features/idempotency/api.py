"""ASGI middleware: HTTP writes with an `Idempotency-Key` header answer a retry with the original.

For endpoints that have no idempotency of their own (creating a group, adding members, …);
message sends use `client_txn_id`, which works over the WebSocket too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from qunliao.core.errors import ApiError
from qunliao.core.http import PRINCIPAL_SCOPE_KEY, bearer_token, is_routed
from qunliao.core.principal import Principal
from qunliao.features.idempotency.service import IdempotencyService, fingerprint

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]  # fmt: skip
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_BODY = 1 << 20


class IdempotencyMiddleware:
    def __init__(
        self, app: ASGIApp, service: IdempotencyService,
        authenticate: Callable[[str], Awaitable[Principal | None]],
        on_error: Callable[[ApiError], Awaitable[tuple[int, bytes, list[tuple[bytes, bytes]]]]],
        not_replayed: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:  # fmt: skip
        self._app = app
        # (method, path) of writes whose answers hold secrets (a new access token): they are
        # never stored for replay, so a retry runs again instead.
        self._not_replayed = not_replayed
        self._service = service
        self._authenticate = authenticate
        self._on_error = on_error

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITES
            or (scope["method"], scope["path"]) in self._not_replayed
        ):
            await self._app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        key_raw = headers.get(b"idempotency-key")
        token = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
        if key_raw is None or token is None or not is_routed(scope):  # no route: 404 or 405
            await self._app(scope, receive, send)
            return
        principal = await self._authenticate(token)
        if principal is None:
            await self._app(scope, receive, send)  # the app answers 401
            return
        scope[PRINCIPAL_SCOPE_KEY] = principal  # the route's auth dependency takes it from here
        key = key_raw.decode("latin-1")
        body = await _read_body(receive)
        try:
            self._service.check_key(key)
            if len(body) > MAX_BODY:
                raise ApiError("too_large", "request body too large")
            print_ = fingerprint(scope["method"], scope["path"], body)
            async with self._service.lock(principal.user_id, key):
                earlier = await self._service.stored_answer(principal.user_id, key, print_)
                if earlier is not None:
                    await _answer(send, earlier.status, earlier.body,
                                  [(b"content-type", b"application/json"),
                                   (b"idempotent-replayed", b"true")])  # fmt: skip
                    return
                status, answer = await self._run(scope, body, send)
                if status < 500 and status != 429:
                    await self._service.do_remember(principal.user_id, key, print_, status,
                                                    answer)  # fmt: skip
        except ApiError as error:
            status, payload, extra = await self._on_error(error)
            await _answer(send, status, payload, extra)

    async def _run(self, scope: Scope, body: bytes, send: Any) -> tuple[int, bytes]:
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 500
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))
            await send(message)

        await self._app(scope, receive, capture)
        return status, b"".join(chunks)


async def _read_body(receive: Any) -> bytes:
    parts = []
    total = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        total += len(chunk)
        if total <= MAX_BODY + 1:
            parts.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(parts)


async def _answer(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})  # fmt: skip
