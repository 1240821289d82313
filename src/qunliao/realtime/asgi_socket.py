"""A WebSocket over raw ASGI messages, without Starlette's per-message wrappers.

The gateway is the hot path: every frame in and out passes here, so it speaks ASGI directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Disconnected(Exception):
    """The client went away."""


class RawSocket:
    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.open = False
        self.closed = False
        self.headers: dict[str, str] = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        self.query: dict[str, str] = dict(
            parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        )
        client = scope.get("client")
        self.client_host = str(client[0]) if client else "?"

    async def accept(self) -> None:
        message = await self._receive()
        if message["type"] != "websocket.connect":
            self.closed = True
            raise Disconnected()
        await self._send({"type": "websocket.accept"})
        self.open = True

    async def receive_text(self) -> str:
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            self.closed = True
            raise Disconnected()
        text = message.get("text")
        if text is None:
            data = message.get("bytes") or b""
            text = data.decode("utf-8", "replace")
        return str(text)

    async def send(self, data: bytes) -> None:
        """Send one text frame (`data` is its UTF-8)."""
        if self.closed:
            raise Disconnected()
        try:
            await self._send({"type": "websocket.send", "text": data.decode()})
        except OSError as exc:  # uvicorn raises ClientDisconnected (an OSError) after a drop
            self.closed = True
            raise Disconnected() from exc

    async def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})
        except OSError:
            pass


class WebSocketFastPath:
    """ASGI middleware: WebSockets on `path` go straight to `handler`, everything else on."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], path: str,
        handler: Callable[[RawSocket], Awaitable[object]],
    ) -> None:  # fmt: skip
        self._app = app
        self._path = path
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope.get("path") == self._path:
            await self._handler(RawSocket(scope, receive, send))
            return
        await self._app(scope, receive, send)
