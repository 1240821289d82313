"""The WebSocket gateway at /api/v1/ws: resume, live push, and the hot send path.

The gateway knows nothing of features: app.py hands it authentication and catch-up, and the
frame types it serves come from the stream kinds' registry (`send`, `read`, `typing` are
messages'), so the layers stay one-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson

from qunliao.core.errors import ApiError
from qunliao.core.events import StoredEvent
from qunliao.core.http import bearer_token
from qunliao.core.principal import Principal
from qunliao.core.streams import FrameHandler, Registry
from qunliao.core.tokens import decode_sync_token, encode_sync_token
from qunliao.realtime.asgi_socket import Disconnected, RawSocket
from qunliao.realtime.fast_ws import GatewaySocket
from qunliao.realtime.hub import Hub

log = logging.getLogger(__name__)

CATCH_UP_PAGE = 500
FIRST_FRAME_WAIT_S = 0.1
Frame = dict[str, Any]
Socket = RawSocket | GatewaySocket
NOT_JSON = object()


@dataclass(frozen=True)
class GatewayHandlers:
    authenticate: Callable[[str], Awaitable[Principal | None]]
    # (user, after position, limit) → (events, the position read up to): sync's catch-up.
    events_for_user: Callable[[str, int, int], Awaitable[tuple[list[StoredEvent], int]]]
    # Frame types by name (`send`, `read`, …), each a FrameHandler of some feature.
    registry: Registry


class SocketConnection:
    """One open socket and its bounded outgoing queue.

    A picows socket (`direct`) is written to at once while the kernel keeps up; the queue only
    fills while its transport is paused and is flushed when it resumes. An ASGI socket's queue
    is drained by a writer task.
    """

    def __init__(self, sock: Socket, principal: Principal, queue_limit: int) -> None:
        self.sock = sock
        self.direct = isinstance(sock, GatewaySocket)
        self.user_id = principal.user_id
        self.device_id = principal.device_id
        self.cursor = 0  # the last event queued (pushes at or below it are duplicates)
        self.sent = 0  # the last event written to the socket: where a cut-off client resumes
        self.live = False
        self.started_at = 0  # the position the socket was accepted at
        # Streams pushed to before the client's first frame (None once it came): a late
        # resume frame may replay what came before the accept only where it cannot reorder.
        self.pushed_before_first_frame: set[str] | None = set()
        self._queue_limit = queue_limit
        # A direct socket makes its queue only once its transport first pauses.
        self._queue: asyncio.Queue[tuple[int, bytes]] | None = (
            None if self.direct else asyncio.Queue(queue_limit)
        )
        self.closing: tuple[int, str] | None = None
        self.ended = False  # closed by us (revoked, too slow, shutdown) or the writer failed
        self.receiver: asyncio.Future[None] | None = None
        # Frames that arrived while a late resume was being answered (dispatched after it);
        # reading from the client pauses meanwhile, so the list stays short.
        self.held: list[Any] | None = None
        self.replayed: asyncio.Event | None = None
        if isinstance(sock, GatewaySocket):
            sock.on_writable = self._flush

    def push(self, pos: int, data: bytes, stream_id: str) -> None:
        if not self.live or pos <= self.cursor:
            return
        self.cursor = pos
        if self.pushed_before_first_frame is not None:
            self.pushed_before_first_frame.add(stream_id)
        self._enqueue(pos, data)

    def push_state(self, data: bytes) -> None:
        if self.live:
            self._enqueue(0, data)

    def send_frame(self, frame: Frame) -> None:
        self._enqueue(0, orjson.dumps(frame))

    def _enqueue(self, pos: int, data: bytes) -> None:
        if self.closing is not None:
            return
        sock = self.sock
        queue = self._queue
        if isinstance(sock, GatewaySocket) and sock.writable and (queue is None or queue.empty()):
            try:
                sock.write(data)
            except Disconnected:
                self._end()
                return
            if pos:
                self.sent = pos
            return
        if queue is None:
            queue = self._queue = asyncio.Queue(self._queue_limit)
        try:
            queue.put_nowait((pos, data))
        except asyncio.QueueFull:
            # A stalled reader: drop it with a way back instead of growing memory. What is
            # still queued is dropped too, so it resumes after the last event actually sent.
            self.close_soon(4008, "too slow; reconnect with since=" + encode_sync_token(self.sent))

    def close_soon(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
            queue = self._queue
            while queue is not None and not queue.empty():  # past the token: never written
                queue.get_nowait()
                queue.task_done()
            self._end()
            if isinstance(self.sock, GatewaySocket):
                self.sock.close_now(code, reason)  # also wakes a catch-up waiting to write

    async def writer(self) -> None:
        queue = self._queue
        assert queue is not None  # made up front for ASGI sockets
        try:
            while True:
                pos, data = await queue.get()
                await self.sock.send(data)
                queue.task_done()
                if pos:
                    self.sent = pos
        except Disconnected:
            self._end()

    def _flush(self) -> None:
        """A direct socket's transport took writes again: send what queued meanwhile."""
        sock, queue = self.sock, self._queue
        assert isinstance(sock, GatewaySocket)
        while queue is not None and sock.writable and not queue.empty() and not self.closing:
            pos, data = queue.get_nowait()
            try:
                sock.write(data)
            except Disconnected:
                self._end()
                return
            queue.task_done()
            if pos:
                self.sent = pos

    async def drain(self, timeout_s: float) -> None:
        """Wait until everything queued is written (so direct sends cannot overtake it)."""
        if self._queue is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except TimeoutError:
            self.close_soon(4008, "too slow; reconnect with since=" + encode_sync_token(self.sent))

    def _end(self) -> None:
        self.ended = True
        if self.receiver is not None:
            self.receiver.cancel()  # one task fewer per socket than waiting on an event


def _error_frame(client_txn_id: Any, error: ApiError) -> Frame:
    body: Frame = {"code": error.code, "message": error.message}
    if error.retry_after is not None:
        body["retry_after"] = round(error.retry_after, 3)
    return {
        "type": "error",
        "client_txn_id": client_txn_id if isinstance(client_txn_id, str) else None,
        "error": body,
    }


def _token_from(sock: Socket) -> str | None:
    return bearer_token(sock.headers.get("authorization", "")) or sock.query.get("access_token")


def _parse(raw: str | bytes | memoryview) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return NOT_JSON  # dispatched, so the client gets its error frame


class Gateway:
    def __init__(
        self,
        hub: Hub,
        handlers: GatewayHandlers,
        *,
        queue_limit: int = 4096,
        max_connections: int = 20_000,
        max_per_ip: int = 1_000,
        ping_interval_s: float = 20.0,
        exempt: Callable[[str], bool] = lambda _ip: False,
    ) -> None:
        self._hub = hub
        self._exempt = exempt  # trusted proxies: not held to max_per_ip
        self._ping_interval_s = ping_interval_s
        self._heartbeat: asyncio.Task[None] | None = None
        self._handlers = handlers
        self._frames = handlers.registry.frames
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

    def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat(), name="qunliao-ws-heartbeat")

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None

    async def _beat(self) -> None:
        """Find vanished clients (no FIN: a phone that lost its network, a NAT that forgot
        the flow) on picows sockets; uvicorn pings its own. One task for all sockets."""
        while True:
            await asyncio.sleep(self._ping_interval_s)
            for conn in list(self._connections):
                if isinstance(conn.sock, GatewaySocket):
                    conn.sock.probe()

    async def endpoint(self, sock: Socket) -> bool:
        """Serve a socket; True when it is still open and driven by callbacks from now on."""
        ip = sock.client_host
        if len(self._connections) >= self._max_connections or (
            self._per_ip.get(ip, 0) >= self._max_per_ip and not self._exempt(ip)
        ):
            self.refused += 1
            with contextlib.suppress(Disconnected):
                await sock.accept()
                await sock.close(1013, "too many connections; try again later")
            return False
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        left = partial(self._left, ip)
        detached = False
        try:
            detached = await self._serve(sock, left)
        except Disconnected:
            pass
        finally:
            if not detached:
                left()
        return detached

    def _left(self, ip: str) -> None:
        left = self._per_ip.pop(ip, 1) - 1
        if left > 0:
            self._per_ip[ip] = left

    async def _serve(self, sock: Socket, on_end: Callable[[], None]) -> bool:
        """Serve one socket. True when it went live on callbacks (a picows socket): then the
        task ends here and `on_end` runs when the socket does, so an idle socket costs no task.
        """
        token = _token_from(sock)
        principal = await self._handlers.authenticate(token) if token else None
        # Accept, then close: a refused handshake reaches most clients as a bare 403.
        await sock.accept()
        if principal is None:
            await sock.close(4401, "invalid or revoked token")
            return False
        since_param = sock.query.get("since")
        try:
            since = decode_sync_token(since_param) if since_param is not None else None
        except ApiError:
            await sock.close(4400, "invalid since token")
            return False
        conn = SocketConnection(sock, principal, self._queue_limit)
        # Where the hub is: what it has not delivered yet it will push to this socket.
        conn.cursor = conn.sent = conn.started_at = self._hub.pos
        self._connections.add(conn)
        self._hub.register(conn)
        tasks: set[asyncio.Task[Any]] = set()
        writer = None if conn.direct else asyncio.create_task(conn.writer())
        receiver: asyncio.Future[None] | None = None
        detached = False
        try:
            pending: list[Any] = []
            if since is None:
                first = await self._first_frame(sock)
                if first is not None:
                    conn.pushed_before_first_frame = None
                if isinstance(first, dict) and first.get("type") == "resume":
                    try:
                        since = decode_sync_token(first.get("since"))
                    except ApiError as exc:
                        conn.send_frame(_error_frame(None, exc))
                elif first is not None:
                    pending.append(first)
            if since is not None:
                conn.cursor = conn.sent = since
                conn.pushed_before_first_frame = None
            await self._catch_up(conn)
            for frame in pending:
                if conn.closing is None:  # not from a session revoked meanwhile
                    self._dispatch(conn, principal, frame, tasks)
            on_message = partial(self._on_message, conn, principal, tasks)
            if isinstance(sock, GatewaySocket):
                receiver = conn.receiver = sock.listen(on_message)  # frames come as callbacks
                if not conn.ended and not receiver.done():
                    finish = partial(self._finish, conn, None, tasks, on_end)
                    receiver.add_done_callback(lambda _f: finish())
                    detached = True
                    return True
            else:
                receiver = conn.receiver = asyncio.create_task(
                    self._receive(conn, sock, on_message)
                )
            if conn.ended:
                receiver.cancel()
            try:
                await receiver
            except asyncio.CancelledError:
                if not conn.ended:
                    raise  # the endpoint itself is being cancelled
            return False
        finally:
            if not detached:
                self._finish(conn, writer, tasks, None)
                if conn.closing is not None and not isinstance(sock, GatewaySocket):
                    await sock.close(*conn.closing)

    def _finish(
        self, conn: SocketConnection, writer: asyncio.Task[None] | None,
        tasks: set[asyncio.Task[Any]], on_end: Callable[[], None] | None,
    ) -> None:  # fmt: skip
        self._hub.unregister(conn)
        self._connections.discard(conn)
        for task in (writer, conn.receiver, *tasks):
            if task is not None:
                task.cancel()
        if isinstance(conn.sock, GatewaySocket):
            code, reason = conn.closing or (1000, "")
            conn.sock.close_now(code, reason)
        if on_end is not None:
            on_end()

    async def _first_frame(self, sock: Socket) -> Any:
        try:
            return _parse(await asyncio.wait_for(sock.receive_text(), FIRST_FRAME_WAIT_S))
        except TimeoutError:
            return None

    async def _catch_up(self, conn: SocketConnection) -> None:
        """Send what the client missed straight from storage, then switch to live pushes."""
        while True:
            if conn.closing is not None:
                return  # revoked or shut down meanwhile: no more catch-up
            if conn.cursor >= self._hub.pos:
                conn.live = True  # nothing missed that the hub will not push: no query
                break
            found, upto = await self._handlers.events_for_user(
                conn.user_id, conn.cursor, CATCH_UP_PAGE
            )
            for event in found:
                await conn.sock.send(self._hub.encode(event))
                conn.sent = event.pos
                if conn.pushed_before_first_frame is not None:
                    conn.pushed_before_first_frame.add(event.stream_id)
            conn.cursor = max(conn.cursor, upto)
            conn.sent = conn.cursor
            # No await between this check and going live: the hub cannot slip in between.
            if len(found) < CATCH_UP_PAGE and conn.cursor >= self._hub.pos:
                conn.live = True
                break
        # Every socket learns where it stands, so even one dropped before its first event resumes.
        conn.send_frame({"type": "synced", "next_token": encode_sync_token(conn.cursor)})

    @staticmethod
    async def _receive(
        conn: SocketConnection, sock: RawSocket, on_message: Callable[[str], None]
    ) -> None:
        try:
            while True:
                on_message(await sock.receive_text())
                if conn.replayed is not None:
                    await conn.replayed.wait()  # read no further during a late resume
        except Disconnected:
            return

    def _on_message(
        self, conn: SocketConnection, principal: Principal, tasks: set[asyncio.Task[Any]],
        raw: str | bytes | memoryview,
    ) -> None:  # fmt: skip
        if conn.closing is not None:
            return  # revoked, too slow or shutting down: nothing more is taken from it
        frame = _parse(raw)
        if conn.held is not None:
            conn.held.append(frame)
            return
        early = conn.pushed_before_first_frame
        conn.pushed_before_first_frame = None
        if early is not None and isinstance(frame, dict) and frame.get("type") == "resume":
            conn.held = []
            conn.replayed = asyncio.Event()
            if isinstance(conn.sock, GatewaySocket):
                conn.sock.hold_input()
            self._spawn(tasks, self._late_resume(conn, principal, tasks, frame, early))
            return
        self._dispatch(conn, principal, frame, tasks)

    async def _late_resume(
        self, conn: SocketConnection, principal: Principal, tasks: set[asyncio.Task[Any]],
        frame: Frame, pushed: set[str],
    ) -> None:  # fmt: skip
        """A resume frame that arrived after the socket went live (a slow first round trip).

        What came after the accept was pushed already; replay what came between the token
        and the accept — unless a stream got both, where the replay would come out of order.
        Frames sent after the resume wait for it.
        """
        try:
            await self._replay_missed(conn, frame, pushed)
        except Disconnected:
            return
        except Exception:
            log.exception("late resume failed")
            conn.close_soon(1011, "internal error; reconnect with since=<token>")
            return
        finally:
            held, conn.held = conn.held or [], None
            replayed, conn.replayed = conn.replayed, None
            if replayed is not None:
                replayed.set()
            if isinstance(conn.sock, GatewaySocket):
                conn.sock.release_input()
        for later in held:
            if conn.closing is None:
                self._dispatch(conn, principal, later, tasks)

    async def _replay_missed(self, conn: SocketConnection, frame: Frame, pushed: set[str]) -> None:
        try:
            since = decode_sync_token(frame.get("since"))
        except ApiError as exc:
            conn.send_frame(_error_frame(None, exc))
            return
        # Hold live pushes while replaying (the catch-up below sends what they skip), so the
        # replay cannot interleave with newer events of the same conversation.
        conn.live = False
        await conn.drain(10.0)
        missed: list[StoredEvent] = []
        position = since
        while position < conn.started_at:
            found, upto = await self._handlers.events_for_user(
                conn.user_id, position, CATCH_UP_PAGE
            )
            missed.extend(e for e in found if e.pos <= conn.started_at)
            if len(found) < CATCH_UP_PAGE:
                break
            position = upto
        if pushed & {e.stream_id for e in missed}:
            message = "events were pushed before this resume; reconnect with ?since=<token>"
            conn.send_frame(_error_frame(None, ApiError("conflict", message)))
        else:
            for event in missed:
                await conn.sock.send(self._hub.encode(event))
        await self._catch_up(conn)

    def _dispatch(
        self, conn: SocketConnection, principal: Principal, frame: Any,
        tasks: set[asyncio.Task[Any]],
    ) -> None:  # fmt: skip
        if not isinstance(frame, dict):
            message = "frame is not JSON" if frame is NOT_JSON else "frame must be an object"
            conn.send_frame(_error_frame(None, ApiError("bad_request", message)))
            return
        kind = frame.get("type")
        handler = self._frames.get(kind) if isinstance(kind, str) else None
        if handler is not None:
            self._handle(conn, principal, frame, handler, tasks)
        elif kind == "ping":
            conn.send_frame({"type": "pong"})
        else:
            error = ApiError("bad_request", f"unknown frame type {kind!r}")
            conn.send_frame(_error_frame(frame.get("client_txn_id"), error))

    def _handle(
        self, conn: SocketConnection, principal: Principal, frame: Frame, handler: FrameHandler,
        tasks: set[asyncio.Task[Any]],
    ) -> None:  # fmt: skip
        txn = frame.get("client_txn_id")
        if handler.now is not None:
            # The hot path: answered from memory and queued, or False when it needs storage.
            to_frame = handler.result_frame or _with_txn
            try:
                if handler.now(principal, frame, partial(_answer, conn, txn, to_frame)):
                    return
            except ApiError as exc:
                conn.send_frame(_error_frame(txn, exc))
                return
        self._spawn(tasks, self._call(conn, principal, frame, handler, txn))

    async def _call(
        self, conn: SocketConnection, principal: Principal, frame: Frame, handler: FrameHandler,
        txn: Any,
    ) -> None:  # fmt: skip
        result: Frame | BaseException | None
        try:
            result = await handler.call(principal, frame)
        except Exception as exc:
            result = exc
        if result is not None:
            _answer(conn, txn, _with_txn, result)

    @staticmethod
    def _spawn(tasks: set[asyncio.Task[Any]], work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)


def _with_txn(txn: Any, frame: Frame) -> Frame:
    return {"type": frame["type"], "client_txn_id": txn, **frame}


def _answer(
    conn: SocketConnection, txn: Any, to_frame: Callable[[Any, Any], Frame], result: Any
) -> None:
    """The answer (an ack, after the commit) or the error for one frame."""
    if not isinstance(result, BaseException):
        conn.send_frame(to_frame(txn, result))
    elif isinstance(result, ApiError):
        conn.send_frame(_error_frame(txn, result))
    else:
        log.error("ws frame failed", exc_info=result)
        conn.send_frame(_error_frame(txn, ApiError("internal", "internal error")))
