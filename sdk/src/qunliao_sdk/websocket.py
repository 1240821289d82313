"""One WebSocket connection to `/api/v1/ws`: sends matched to their acks, events as a stream."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Any, Literal

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from qunliao_sdk._http import new_txn_id
from qunliao_sdk.errors import QunliaoConnectionError, QunliaoError, code_for_status
from qunliao_sdk.models import JSONDict, SendResult

logger = logging.getLogger("qunliao_sdk")

CLOSE_UNAUTHORIZED = 4401  # token bad or revoked: log in again
CLOSE_TOO_SLOW = 4008  # we read too slowly; the reason carries since=<token>
_FATAL_STATUSES = {400, 401, 403, 404, 409, 413}

_CLOSED: JSONDict = {"type": "__closed__"}


def close_error(code: int | None, reason: str | None) -> QunliaoError:
    """Why the server closed the socket, as the error to raise.

    4400/4401/4403/4404 (4000 + an HTTP status the API uses) mean "don't come back like this":
    a QunliaoError with that status. Everything else (1012 restart, 1013 too many connections,
    4008 too slow to read, 4429, a broken connection) is a QunliaoConnectionError: reconnect and
    resume. For 4008 the server puts `since=<token>` in the reason.
    """
    reason = reason or ""
    if code is not None and 4000 <= code < 5000 and (code - 4000) in _FATAL_STATUSES:
        status = code - 4000
        return QunliaoError(status, code_for_status(status), reason or f"closed with {code}")
    error = QunliaoConnectionError(
        f"WebSocket closed (code {code}, {reason or 'no reason'})", close_code=code
    )
    if code == CLOSE_TOO_SLOW and reason.startswith("since="):
        error.resume_token = reason.removeprefix("since=").split()[0] or None
    return error


def _handshake_error(exc: InvalidStatus) -> QunliaoError:
    status = exc.response.status_code
    code, message = code_for_status(status), f"WebSocket handshake refused with HTTP {status}"
    try:
        payload = orjson.loads(exc.response.body) if exc.response.body else None
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        code = str(payload["error"].get("code") or code)
        message = str(payload["error"].get("message") or message)
    return QunliaoError(status, code, message)


class WebSocketConnection:
    """A live socket. Use as `async with client.websocket(since=…) as ws:`.

    A reader task routes `ack`/`error` frames to the `send_text` call waiting for them (by
    `client_txn_id`) and `pong` to `ping`; every other frame (events, `read`, `typing`,
    `synced`) is queued for `events()` / `next_event()`. The queue is unbounded, so a socket used
    only for sending never stalls its acks. Error frames nobody waits for (a bad `read` frame, a
    malformed frame) are logged and kept in `unmatched_errors`.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        max_size: int | None = 4 * 2**20,
        headers: dict[str, str] | None = None,
    ):
        self._url = url
        self._headers = dict(headers or {})  # the token travels here, never in the URL
        self.timeout = timeout
        self._max_size = max_size
        self._conn: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[JSONDict] = asyncio.Queue()
        self._pending: dict[str, list[asyncio.Future[SendResult]]] = {}
        self._pongs: deque[asyncio.Future[None]] = deque()
        self._closing = False
        self._close_error: QunliaoError | None = None
        self._finished = asyncio.Event()
        self.unmatched_errors: deque[QunliaoError] = deque(maxlen=100)
        self.last_token: str | None = None
        """The newest resume token among the events handed out so far (event `token` or
        `synced.next_token`): reconnect with `since=last_token` to miss nothing."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> WebSocketConnection:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the socket. A refused handshake raises QunliaoError with the HTTP status."""
        if self._conn is not None:
            raise RuntimeError("this WebSocketConnection was already opened; make a new one")
        try:
            self._conn = await connect(
                self._url,
                open_timeout=self.timeout,
                close_timeout=min(self.timeout, 5.0),
                max_size=self._max_size,
                additional_headers=self._headers,
                user_agent_header="qunliao-sdk",
            )
        except InvalidStatus as exc:
            raise _handshake_error(exc) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise QunliaoConnectionError(f"WebSocket connect: {type(exc).__name__}: {exc}") from exc
        self._reader = asyncio.create_task(self._read_loop(self._conn), name="qunliao-ws-reader")

    async def close(self) -> None:
        """Close from our side; pending sends fail with QunliaoConnectionError."""
        self._closing = True
        if self._conn is not None:
            await self._conn.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._reader), timeout=self.timeout)
            except TimeoutError:
                self._reader.cancel()

    @property
    def closed(self) -> bool:
        return self._finished.is_set()

    @property
    def close_code(self) -> int | None:
        return None if self._conn is None else self._conn.close_code

    async def wait_closed(self) -> QunliaoError | None:
        """Wait until the socket is gone; returns why (None when we closed it ourselves)."""
        await self._finished.wait()
        return self._close_error

    # -- reading -----------------------------------------------------------------------------

    async def _read_loop(self, conn: ClientConnection) -> None:
        try:
            while True:
                raw = await conn.recv(decode=False)
                try:
                    frame = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    logger.warning("qunliao: ignoring a frame that is not JSON")
                    continue
                if isinstance(frame, dict):
                    self._route(frame)
        except ConnectionClosed:
            pass
        except Exception:  # a bug here must not leave senders waiting forever
            logger.exception("qunliao: WebSocket reader failed")
        finally:
            self._finish(conn)

    def _finish(self, conn: ClientConnection) -> None:
        if self._closing:
            self._close_error = None
        else:
            self._close_error = close_error(conn.close_code, conn.close_reason)
        failure = self._close_error or QunliaoConnectionError("WebSocket closed by the client")
        for futures in self._pending.values():
            for future in futures:
                if not future.done():
                    future.set_exception(failure)
        self._pending.clear()
        while self._pongs:
            pong = self._pongs.popleft()
            if not pong.done():
                pong.set_exception(failure)
        self._events.put_nowait(_CLOSED)
        self._finished.set()

    def _route(self, frame: JSONDict) -> None:
        kind = frame.get("type")
        if kind == "ack":
            for future in self._pending.pop(str(frame.get("client_txn_id")), []):
                if not future.done():
                    future.set_result(SendResult.from_json(frame))
        elif kind == "error":
            error = QunliaoError.from_frame(frame.get("error"))
            waiters = self._pending.pop(str(frame.get("client_txn_id")), [])
            if not waiters:
                logger.warning("qunliao: server error frame: %s", error)
                self.unmatched_errors.append(error)
            for future in waiters:
                if not future.done():
                    future.set_exception(error)
        elif kind == "pong":
            while self._pongs:
                pong = self._pongs.popleft()
                if not pong.done():
                    pong.set_result(None)
                    break
        else:
            self._events.put_nowait(frame)

    def _take(self, event: JSONDict) -> JSONDict:
        if event.get("type") == "synced" and isinstance(event.get("next_token"), str):
            self.last_token = event["next_token"]
        elif isinstance(event.get("token"), str):
            self.last_token = event["token"]
        return event

    async def next_event(self) -> JSONDict:
        """The next event frame; raises why the socket closed (see `events`)."""
        event = await self._events.get()
        if event is _CLOSED:
            self._events.put_nowait(_CLOSED)  # every later reader sees the end too
            raise self._close_error or QunliaoConnectionError("WebSocket closed by the client")
        return self._take(event)

    async def events(self) -> AsyncGenerator[JSONDict, None]:
        """Every event frame as it arrives, until the socket closes.

        Ends quietly when we closed it; otherwise raises QunliaoConnectionError (reconnect with
        `since=ws.last_token`) or QunliaoError 401 for close code 4401 (token revoked).
        """
        while True:
            event = await self._events.get()
            if event is _CLOSED:
                self._events.put_nowait(_CLOSED)
                if self._close_error is not None:
                    raise self._close_error
                return
            yield self._take(event)

    # -- writing -----------------------------------------------------------------------------

    async def send_frame(self, frame: JSONDict) -> None:
        """Send one raw JSON frame."""
        if self._conn is None:
            raise RuntimeError("WebSocketConnection is not connected")
        if self._finished.is_set():
            raise self._close_error or QunliaoConnectionError("WebSocket closed by the client")
        try:
            await self._conn.send(orjson.dumps(frame), text=True)
        except ConnectionClosed as exc:
            raise QunliaoConnectionError(f"WebSocket closed while sending: {exc}") from exc

    async def send_text(
        self,
        conversation_id: str,
        text: str,
        client_txn_id: str | None = None,
        *,
        reply_to: str | None = None,
        mentions: list[str] | Literal["all"] | None = None,
        ack_timeout: float | None = None,
    ) -> SendResult:
        """Send a text message and wait for its `ack` (after the server's commit).

        Raises QunliaoError for the matching `error` frame, and QunliaoConnectionError when the
        socket goes away or no ack comes within `ack_timeout` (default: the client's timeout);
        then the outcome is unknown: send again with the same `client_txn_id` (on any socket or
        over HTTP) to learn it.
        """
        txn = client_txn_id or new_txn_id()
        frame: JSONDict = {
            "type": "send",
            "conversation_id": conversation_id,
            "client_txn_id": txn,
            "msg_type": "text",
            "body": {"text": text},
        }
        if reply_to is not None:
            frame["reply_to"] = reply_to
        if mentions is not None:
            frame["mentions"] = mentions
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(txn, []).append(future)
        try:
            await self.send_frame(frame)
            limit = self.timeout if ack_timeout is None else ack_timeout
            try:
                return await asyncio.wait_for(future, limit)
            except TimeoutError as exc:
                raise QunliaoConnectionError(f"no ack for {txn} within {limit} s") from exc
        finally:
            waiters = self._pending.get(txn)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._pending[txn]
            if future.done() and not future.cancelled():
                future.exception()  # seen: the socket broke while the frame was being written

    async def read(self, conversation_id: str, seq: int) -> None:
        """Move my read position (no answer unless it fails: see `unmatched_errors`)."""
        await self.send_frame({"type": "read", "conversation_id": conversation_id, "seq": seq})

    async def typing(self, conversation_id: str, typing: bool = True) -> None:
        await self.send_frame(
            {"type": "typing", "conversation_id": conversation_id, "typing": typing}
        )

    async def resume(self, since: str) -> None:
        """Ask for every event after `since` (then a `synced` frame), as `?since=` would."""
        await self.send_frame({"type": "resume", "since": since})

    async def ping(self) -> None:
        """Application-level ping: waits (up to the client's timeout) for the server's `pong`."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.append(future)
        await self.send_frame({"type": "ping"})
        await asyncio.wait_for(future, self.timeout)

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("open" if self._conn is not None else "new")
        return f"<WebSocketConnection {state}>"


def frame_key(event: dict[str, Any]) -> tuple[str, int] | None:
    """(conversation_id, seq) of a stored event, None for state events without a seq."""
    conversation_id, seq = event.get("conversation_id"), event.get("seq")
    if isinstance(conversation_id, str) and isinstance(seq, int):
        return conversation_id, seq
    return None
