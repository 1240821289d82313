"""The WebSocket gateway at /api/v1/ws: resume, live push, and the hot send path.

The gateway knows nothing of features: app.py hands it the functions it calls (authenticate,
send, read, typing, catch-up), so the layers stay one-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from qunliao.core.errors import ApiError
from qunliao.core.principal import Principal
from qunliao.core.tokens import decode_sync_token, encode_sync_token
from qunliao.realtime.hub import Hub, encode_event
from qunliao.storage.spine import StoredEvent

log = logging.getLogger(__name__)

CATCH_UP_PAGE = 500
FIRST_FRAME_WAIT_S = 0.1


@dataclass
class GatewayHandlers:
    authenticate: Callable[[str], Awaitable[Principal | None]]
    send: Callable[[Principal, dict[str, Any]], Awaitable[dict[str, Any]]]
    read: Callable[[Principal, dict[str, Any]], Awaitable[None]]
    typing: Callable[[Principal, dict[str, Any]], Awaitable[None]]
    events_for_user: Callable[[str, int, int], Awaitable[tuple[list[StoredEvent], int]]]
    max_position: Callable[[], Awaitable[int]]


class SocketConnection:
    """One open socket: a bounded outgoing queue drained by its own writer task."""

    def __init__(self, ws: WebSocket, principal: Principal, queue_limit: int) -> None:
        self.ws = ws
        self.user_id = principal.user_id
        self.device_id = principal.device_id
        self.cursor = 0
        self.live = False
        self._queue: asyncio.Queue[str] = asyncio.Queue(queue_limit)
        self.closing: tuple[int, str] | None = None
        self.closed = asyncio.Event()

    def push(self, pos: int, text: str) -> None:
        if not self.live or pos <= self.cursor:
            return
        self.cursor = pos
        self._enqueue(text)

    def push_state(self, text: str) -> None:
        if self.live:
            self._enqueue(text)

    def send_frame(self, frame: dict[str, Any]) -> None:
        self._enqueue(orjson.dumps(frame).decode())

    def _enqueue(self, text: str) -> None:
        if self.closing is not None:
            return
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            # A stalled reader: drop it with a way back instead of growing memory.
            self.close_soon(
                4008, "too slow; reconnect with since=" + encode_sync_token(self.cursor)
            )

    def close_soon(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
            self.closed.set()

    async def writer(self) -> None:
        while True:
            text = await self._queue.get()
            await self.ws.send_text(text)


def _error_frame(client_txn_id: Any, error: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.retry_after is not None:
        body["retry_after"] = round(error.retry_after, 3)
    return {
        "type": "error",
        "client_txn_id": client_txn_id if isinstance(client_txn_id, str) else None,
        "error": body,
    }


def _token_from(ws: WebSocket) -> str | None:
    header = ws.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return ws.query_params.get("access_token")


class Gateway:
    def __init__(
        self,
        hub: Hub,
        handlers: GatewayHandlers,
        *,
        queue_limit: int = 4096,
        max_connections: int = 20_000,
        max_per_ip: int = 1_000,
    ) -> None:
        self._hub = hub
        self._handlers = handlers
        self._queue_limit = queue_limit
        self._max_connections = max_connections
        self._max_per_ip = max_per_ip
        self._connections: set[SocketConnection] = set()
        self._per_ip: dict[str, int] = {}
        self.refused = 0

    @property
    def connections(self) -> int:
        return len(self._connections)

    def close_all(self, code: int = 1012, reason: str = "server restarting; reconnect") -> None:
        for conn in list(self._connections):
            conn.close_soon(code, reason)

    async def endpoint(self, ws: WebSocket) -> None:
        ip = ws.client.host if ws.client else "?"
        if len(self._connections) >= self._max_connections or (
            self._per_ip.get(ip, 0) >= self._max_per_ip
        ):
            self.refused += 1
            await ws.close(code=1013, reason="too many connections; try again later")
            return
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        try:
            await self._serve(ws)
        finally:
            left = self._per_ip.pop(ip, 1) - 1
            if left > 0:
                self._per_ip[ip] = left

    async def _serve(self, ws: WebSocket) -> None:
        token = _token_from(ws)
        principal = await self._handlers.authenticate(token) if token else None
        if principal is None:
            # Accept, then close: a refused handshake reaches most clients as a bare 403.
            await ws.accept()
            await ws.close(code=4401, reason="invalid or revoked token")
            return
        since_param = ws.query_params.get("since")
        try:
            since = decode_sync_token(since_param) if since_param is not None else None
        except ApiError:
            await ws.accept()
            await ws.close(code=4400, reason="invalid since token")
            return
        await ws.accept()
        conn = SocketConnection(ws, principal, self._queue_limit)
        conn.cursor = await self._handlers.max_position()
        self._connections.add(conn)
        self._hub.register(conn)
        pending: list[Any] = []
        tasks: set[asyncio.Task[Any]] = set()
        writer = asyncio.create_task(conn.writer())
        try:
            if since is None:
                first = await self._first_frame(ws)
                if isinstance(first, dict) and first.get("type") == "resume":
                    try:
                        since = decode_sync_token(first.get("since"))
                    except ApiError as exc:
                        conn.send_frame(_error_frame(None, exc))
                elif first is not None:
                    pending.append(first)
            if since is not None:
                conn.cursor = since
            await self._catch_up(conn)
            for frame in pending:
                self._dispatch(conn, principal, frame, tasks)
            await self._receive(conn, principal, tasks)
        except WebSocketDisconnect:
            pass
        finally:
            self._hub.unregister(conn)
            self._connections.discard(conn)
            writer.cancel()
            for task in tasks:
                task.cancel()
            if conn.closing is not None and ws.application_state != WebSocketState.DISCONNECTED:
                with contextlib.suppress(Exception):
                    await ws.close(code=conn.closing[0], reason=conn.closing[1][:120])

    async def _first_frame(self, ws: WebSocket) -> Any:
        try:
            text = await asyncio.wait_for(ws.receive_text(), FIRST_FRAME_WAIT_S)
        except TimeoutError:
            return None
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return text  # dispatched later, so the client gets its error frame

    async def _catch_up(self, conn: SocketConnection) -> None:
        """Send what the client missed straight from storage, then switch to live pushes."""
        while True:
            found, upto = await self._handlers.events_for_user(
                conn.user_id, conn.cursor, CATCH_UP_PAGE
            )
            for event in found:
                await conn.ws.send_text(encode_event(event))
            conn.cursor = max(conn.cursor, upto)
            # No await between this check and going live: the hub cannot slip in between.
            if len(found) < CATCH_UP_PAGE and conn.cursor >= self._hub.pos:
                conn.live = True
                break
        # Every socket learns where it stands, so even one dropped before its first event resumes.
        conn.send_frame({"type": "synced", "next_token": encode_sync_token(conn.cursor)})

    async def _receive(
        self, conn: SocketConnection, principal: Principal, tasks: set[asyncio.Task[Any]]
    ) -> None:
        receive = asyncio.ensure_future(conn.ws.receive())
        closed = asyncio.ensure_future(conn.closed.wait())
        try:
            while True:
                done, _ = await asyncio.wait({receive, closed}, return_when=asyncio.FIRST_COMPLETED)
                if closed in done:
                    return
                message = receive.result()
                if message["type"] == "websocket.disconnect":
                    return
                raw = message.get("text")
                if raw is None and message.get("bytes") is not None:
                    raw = message["bytes"].decode("utf-8", "replace")
                receive = asyncio.ensure_future(conn.ws.receive())
                try:
                    frame = orjson.loads(raw or "")
                except orjson.JSONDecodeError:
                    conn.send_frame(
                        _error_frame(None, ApiError("bad_request", "frame is not JSON"))
                    )
                    continue
                self._dispatch(conn, principal, frame, tasks)
        finally:
            receive.cancel()
            closed.cancel()

    def _dispatch(
        self,
        conn: SocketConnection,
        principal: Principal,
        frame: Any,
        tasks: set[asyncio.Task[Any]],
    ) -> None:
        if not isinstance(frame, dict):
            conn.send_frame(_error_frame(None, ApiError("bad_request", "frame must be an object")))
            return
        kind = frame.get("type")
        if kind == "ping":
            conn.send_frame({"type": "pong"})
            return
        handler = (
            {
                "send": self._handle_send,
                "read": self._handle_simple(self._handlers.read),
                "typing": self._handle_simple(self._handlers.typing),
            }.get(kind)
            if isinstance(kind, str)
            else None
        )
        if handler is None:
            conn.send_frame(
                _error_frame(
                    frame.get("client_txn_id"),
                    ApiError("bad_request", f"unknown frame type {kind!r}"),
                )
            )
            return
        task: asyncio.Task[None] = asyncio.create_task(handler(conn, principal, frame))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _handle_send(
        self, conn: SocketConnection, principal: Principal, frame: dict[str, Any]
    ) -> None:
        txn = frame.get("client_txn_id")
        try:
            result = await self._handlers.send(principal, frame)
        except ApiError as exc:
            conn.send_frame(_error_frame(txn, exc))
            return
        except Exception:
            log.exception("ws send failed")
            conn.send_frame(_error_frame(txn, ApiError("internal", "internal error")))
            return
        conn.send_frame({"type": "ack", "client_txn_id": txn, **result})

    @staticmethod
    def _handle_simple(
        call: Callable[[Principal, dict[str, Any]], Awaitable[None]],
    ) -> Callable[[SocketConnection, Principal, dict[str, Any]], Coroutine[Any, Any, None]]:
        async def handle(
            conn: SocketConnection, principal: Principal, frame: dict[str, Any]
        ) -> None:
            try:
                await call(principal, frame)
            except ApiError as exc:
                conn.send_frame(_error_frame(None, exc))

        return handle
