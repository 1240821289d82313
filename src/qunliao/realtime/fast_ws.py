"""HTTP and the gateway's WebSocket on one port: picows for /api/v1/ws, uvicorn for the rest.

uvicorn builds one `HttpOrWebSocket` per accepted connection. It reads the request line and
hands the connection over for good: a WebSocket upgrade to the gateway path goes to picows
(frames parsed and written in C, no Python per frame below the gateway), anything else to
uvicorn's httptools protocol (as `LimitedHttp`, realtime/connections.py) and so to FastAPI.
Before either, the connection takes a slot of the process's `ConnectionGate`. The gateway
(its `endpoint`) and the gate come from the lifespan state the app yields, so nothing here is
global; until the app has started, every connection goes to uvicorn, whose WebSocket path
reaches the same gateway more slowly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, cast
from urllib.parse import parse_qsl

from picows import (
    WSAutoPingStrategy,
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # not in the stub

from qunliao.realtime.asgi_socket import Disconnected
from qunliao.realtime.connections import (
    GATE_KEY,
    HEAD_TOO_LARGE,
    REQUEST_LINE_MAX,
    TOO_BUSY,
    ConnectionGate,
    LimitedHttp,
    Slot,
    is_health_request,
    peer_address,
    refuse,
)

# The key of the lifespan state under which the app puts its `WebSocketRoute`.
STATE_KEY = "qunliao.websocket"
MAX_MESSAGE = 1 << 20  # as uvicorn's ws_max_size: a text frame is at most 16 KiB of JSON anyway
READ_BUFFER = 2048  # grows when a frame needs more; small, since most sockets sit idle
HANDSHAKE_TIMEOUT_S = 10.0
HEADERS_MAX = 16384  # picows' own limit for a handshake's head: over it → 431
MAX_QUEUED_MESSAGES = 64  # read no further while this many wait for the gateway …
MAX_QUEUED_BYTES = 1 << 20  # … or this many bytes
# What picows logs when a client breaks the protocol (an oversized or malformed frame).
CLIENT_FAULTS = ("WS parser error",)
CLIENT_FAULT_LOG_S = 10.0

log = logging.getLogger(__name__)
# The gateway's endpoint: True when it left the socket open, driven by callbacks.
Handler = Callable[["GatewaySocket"], Coroutine[Any, Any, bool]]


class _PicowsLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """picows logs every connect and disconnect at INFO: keep warnings and errors only.

    (An adapter rather than a Logger also stops picows making a child logger per socket.)
    """

    quiet_until: float
    suppressed: int

    def isEnabledFor(self, level: int) -> bool:  # logging's name
        return level >= logging.WARNING and self.logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if isinstance(msg, str) and msg.startswith(CLIENT_FAULTS):
            # A client's bad frame (too big, malformed) is the client's fault, and any client
            # can send one: WARNING, and at most one line per CLIENT_FAULT_LOG_S.
            now = time.monotonic()
            if now < self.quiet_until:
                self.suppressed += 1
                return
            self.quiet_until = now + CLIENT_FAULT_LOG_S
            if self.suppressed:
                msg = f"{msg} ({self.suppressed} more like this not logged)"
                self.suppressed = 0
            level = logging.WARNING
        super().log(level, msg, *args, **kwargs)


_picows_log = _PicowsLog(logging.getLogger("qunliao.websocket"), {})
_picows_log.quiet_until = 0.0
_picows_log.suppressed = 0


class WebSocketRoute:
    """What the app puts into the lifespan state: the gateway path and its handler."""

    def __init__(
        self, path: str, handler: Handler, frame_budget: tuple[float, float] = (0.0, 0.0)
    ) -> None:
        self.path = path
        # Frames a socket may send per second, and in a burst (0: no budget).
        self.frame_budget = frame_budget
        self.request_prefix = b"GET " + path.encode("ascii")
        self.handler = handler
        self.writes = WriteCoalescer()


class WriteCoalescer:
    """Collects the sockets written to during one turn of the event loop and flushes each
    once at its end: a commit batch acks dozens of sends per socket, and a fan-out pushes
    several events to each member, so writes are gathered instead of sent one by one."""

    def __init__(self) -> None:
        self._dirty: list[GatewaySocket] = []

    def mark(self, sock: GatewaySocket) -> None:
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self._flush)
        self._dirty.append(sock)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for sock in dirty:
            sock.flush()


def _text_header(size: int) -> bytes:
    """RFC 6455 header of a final, unmasked text frame (server to client)."""
    if size < 126:
        return bytes((0x81, size))
    if size < 1 << 16:
        return bytes((0x81, 126)) + size.to_bytes(2, "big")
    return bytes((0x81, 127)) + size.to_bytes(8, "big")


class HttpOrWebSocket(asyncio.Protocol):
    """uvicorn's `http` protocol class: decides on the first bytes, then steps aside."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._config = config
        self._server_state = server_state
        self._app_state = app_state
        self._loop = _loop or asyncio.get_event_loop()
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._timer: asyncio.TimerHandle | None = None
        self._slot: Slot | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        gate = self._app_state.get(GATE_KEY)
        if isinstance(gate, ConnectionGate):
            self._slot = gate.admit(peer_address(transport))
            if self._slot is None:
                refuse(transport)  # this address holds too many: no answer, no work
                return
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it
        # A client that connects and says nothing is dropped as uvicorn would (keep-alive).
        self._timer = self._loop.call_later(self._config.timeout_keep_alive, self._transport.close)

    def data_received(self, data: bytes) -> None:
        if self._transport is None or self._refused:
            return  # refused, closing
        self._head += data
        if b"\r\n" not in self._head and len(self._head) < REQUEST_LINE_MAX:
            return  # the request line has not arrived yet
        if self._slot is not None and self._slot.over_cap and not is_health_request(self._head):
            self._refuse(TOO_BUSY)  # the process is full: room is kept for health checks only
            return
        route = self._app_state.get(STATE_KEY)
        if not isinstance(route, WebSocketRoute) or not _is_request_to(
            self._head, route.request_prefix
        ):
            self._hand_to_uvicorn()
            return
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) >= HEADERS_MAX:
                self._refuse(HEAD_TOO_LARGE)
            return  # the gateway path: wait for the headers
        if end >= HEADERS_MAX:
            self._refuse(HEAD_TOO_LARGE)  # more than picows reads: say so, do not drop
            return
        upgrade = _websocket_upgrade(self._head[:end])
        if upgrade is None:
            self._hand_to_uvicorn()  # not an upgrade (or an odd one): uvicorn answers it
        else:
            self._head = upgrade + self._head[end:]
            self._hand_to_picows(route)

    def eof_received(self) -> bool:
        return False  # closes the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        if self._slot is not None:
            self._slot.release()

    def _refuse(self, answer: bytes) -> None:
        self._stop_timer()
        self._refused = True
        assert self._transport is not None
        refuse(self._transport, answer)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _hand_to_uvicorn(self) -> None:
        slot = self._slot
        transport, head = self._take()
        protocol = LimitedHttp(
            config=self._config,
            server_state=self._server_state,
            app_state=self._app_state,
            _loop=self._loop,
            slot=slot,
        )
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(head)

    def _hand_to_picows(self, route: WebSocketRoute) -> None:
        slot = self._slot
        transport, head = self._take()
        host = peer_address(transport)

        connections = self._server_state.connections

        def listener(request: WSUpgradeRequest) -> GatewaySocket:
            return GatewaySocket(
                request, host, route.handler, route.writes, connections, route.frame_budget
            )

        protocol = picows_protocol(listener, slot)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        view = head
        while view:
            buffer = protocol.get_buffer(len(view))
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            protocol.buffer_updated(n)
            view = view[n:]

    def _take(self) -> tuple[asyncio.Transport, bytes]:
        self._stop_timer()
        assert self._transport is not None
        transport, head = self._transport, self._head
        self._transport, self._head, self._slot = None, b"", None
        return transport, head


class _GatewayProtocol(WSProtocol):  # type: ignore[misc]
    """picows' protocol, giving the connection's slot back when it closes."""

    slot: Slot | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.slot is not None:
            self.slot.release()
            self.slot = None
        super().connection_lost(exc)


def picows_protocol(
    listener_factory: Callable[[WSUpgradeRequest], WSListener], slot: Slot | None = None
) -> Any:
    """picows' server protocol for one connection that uvicorn accepted.

    `WSProtocol` is not in picows' public API (its `ws_create_server` would own the listening
    socket), so it is built here by keyword: a renamed or added parameter in a new picows fails
    loudly instead of binding a wrong value. tests/unit/test_private_apis.py builds one.
    """
    protocol = _GatewayProtocol(
        host_port=None,
        ws_path=None,
        is_client_side=False,
        ws_listener_factory=listener_factory,
        logger=_picows_log,
        disconnect_on_exception=True,  # a callback that raises drops its connection
        websocket_handshake_timeout=HANDSHAKE_TIMEOUT_S,
        enable_auto_ping=False,  # no pings of picows' own: the gateway's heartbeat (`probe`)
        auto_ping_idle_timeout=20,
        auto_ping_reply_timeout=20,
        auto_ping_strategy=WSAutoPingStrategy.PING_WHEN_IDLE,
        enable_auto_pong=True,  # answer pings
        max_frame_size=MAX_MESSAGE,
        extra_headers=None,
        read_buffer_init_size=READ_BUFFER,
    )
    protocol.slot = slot
    return protocol


def _is_request_to(head: bytes, prefix: bytes) -> bool:
    if not head.startswith(prefix):
        return False
    after = head[len(prefix) : len(prefix) + 1]
    return after in (b" ", b"?")


def _websocket_upgrade(head: bytes) -> bytes | None:
    """The request head as picows wants it, or None when it is no WebSocket upgrade.

    Browsers may send `Connection: keep-alive, Upgrade` (Firefox); picows accepts only
    `Connection: Upgrade`, so a token list naming `upgrade` is rewritten to that.
    """
    lines = head.split(b"\r\n")
    upgrade = connection = False
    for i, line in enumerate(lines[1:], start=1):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == b"upgrade":
            upgrade = value.strip().lower() == b"websocket"
        elif name == b"connection":
            connection = b"upgrade" in (t.strip().lower() for t in value.split(b","))
            lines[i] = b"Connection: Upgrade"
    return b"\r\n".join(lines) if upgrade and connection else None


class GatewaySocket(WSListener):
    """One picows connection as the gateway sees it.

    Writes are synchronous and gathered per loop turn (`WriteCoalescer`), so the gateway
    writes without a writer task while the kernel keeps up. Incoming frames (parsed by picows)
    are queued until the gateway takes over with `listen`, then handed to it as they arrive.
    """

    direct = True

    def __init__(
        self,
        request: WSUpgradeRequest,
        client_host: str,
        handler: Handler,
        writes: WriteCoalescer,
        connections: set[Any] | None = None,
        frame_budget: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        super().__init__()
        # uvicorn's set of open connections: on SIGTERM it calls `shutdown()` on each at once
        # and waits for the set to empty.
        self._connections = connections
        self.heard = False  # a frame came since the last heartbeat look (see `probe`)
        self._pinged = False
        self._input_held = False  # the gateway holds input (busy, or a late resume)
        self._throttled = False  # over the frame budget: input waits for it to refill
        self._frame_rate, self._frame_burst = frame_budget
        self._frame_tokens = self._frame_burst
        self._frame_at = time.monotonic()
        self._backlog: deque[bytes] = deque()  # frames read past the budget, in order
        self._queued_bytes = 0
        authorization = request.headers.get("authorization")
        # Only what the gateway reads is kept: most sockets sit idle for hours.
        self.headers: dict[str, str] = {"authorization": authorization} if authorization else {}
        path = request.path
        _, _, query = path.partition(b"?")
        self.query: dict[str, str] = dict(parse_qsl(query.decode("latin-1"))) if query else {}
        self.client_host = client_host
        self.open = False
        self.closed = False
        self.writable = True
        self.on_writable: Callable[[], None] | None = None
        self._handler: Handler | None = handler
        self._transport: WSTransport | None = None
        self._raw: asyncio.Transport | None = None
        self._writes = writes
        self._out: list[bytes] = []
        self._inbox: deque[bytes] | None = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._on_message: Callable[[bytes | memoryview], None] | None = None
        self._gone: asyncio.Future[None] | None = None
        self._resumed: asyncio.Future[None] | None = None
        self._fragments: bytearray | None = None
        self._task: asyncio.Task[bool] | None = None

    # ------------------------------------------------------------ picows callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._transport = transport
        self._raw = transport.underlying_transport
        if self._connections is not None:
            self._connections.add(self)
        handler, self._handler = self._handler, None
        assert handler is not None
        self._task = asyncio.get_running_loop().create_task(handler(self))
        self._task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[bool]) -> None:
        self._task = None  # an idle socket keeps no task
        if task.cancelled():
            self.close_now(1012, "server restarting; reconnect")
        elif (error := task.exception()) is not None:
            log.error("websocket handler failed", exc_info=error)
            self.close_now(1011, "internal error")
        elif not task.result():
            self.close_now(1000, "")

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.heard = True
        kind = frame.msg_type
        if kind == WSMsgType.TEXT or kind == WSMsgType.BINARY:
            if self._fragments is not None:
                self.close_now(1002, "a new message inside a fragmented one")
            elif not frame.fin:
                self._fragments = bytearray(frame.get_payload_as_memoryview())
            else:
                self._message(frame.get_payload_as_memoryview())
        elif kind == WSMsgType.CONTINUATION:
            if self._fragments is None:
                self.close_now(1002, "continuation without a message")
                return
            self._fragments += frame.get_payload_as_memoryview()
            if len(self._fragments) > MAX_MESSAGE:
                self._fragments = None
                self.close_now(1009, "message too big")
            elif frame.fin:
                whole, self._fragments = bytes(self._fragments), None
                self._message(whole)
        elif kind == WSMsgType.CLOSE:
            code: int = frame.get_close_code().value if frame.payload_size >= 2 else 1000
            self.close_now(code if 1000 <= code < 5000 else 1002, "")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        self._out = []
        if self._connections is not None:
            self._connections.discard(self)
        self._wake()
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self._wake_writer()
        if self.on_writable is not None:
            self.on_writable()

    # ------------------------------------------------------------ what the gateway calls

    async def accept(self) -> None:
        self.open = True  # picows answered the upgrade before the gateway was called

    async def receive_text(self) -> bytes:
        """The next message (the gateway reads its first frame this way, with a timeout)."""
        while True:
            if self._inbox:
                message = self._inbox.popleft()
                self._queued_bytes -= len(message)
                if not self._inbox:
                    self.release_input()
                return message
            if self.closed or self._inbox is None:
                raise Disconnected()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def listen(self, on_message: Callable[[bytes | memoryview], None]) -> asyncio.Future[None]:
        """From now on hand each message to `on_message`; the future is done at disconnect."""
        self._gone = asyncio.get_running_loop().create_future()
        queued, self._inbox = self._inbox or deque(), None
        self._on_message = on_message
        for message in queued:
            on_message(message)
        self.release_input()
        if self.closed:
            self._gone.set_result(None)
        return self._gone

    def hold_input(self) -> None:
        """Stop reading from the client (its frames wait in the kernel, then it is throttled)."""
        if not self._input_held and self._raw is not None and not self.closed:
            self._input_held = True
            if not self._throttled:
                self._raw.pause_reading()

    def release_input(self) -> None:
        if self._input_held and self._raw is not None and not self.closed:
            self._input_held = False
            if not self._throttled:
                self._raw.resume_reading()

    def probe(self) -> None:
        """The gateway's heartbeat, every interval: ping a socket that said nothing since the
        last look, and drop one that did not even answer that ping (a vanished client)."""
        if self.heard:
            self.heard = self._pinged = False
        elif self._pinged:
            self.close_now(1011, "keepalive ping timeout")
        elif self._transport is not None and not self.closed:
            self._pinged = True
            self._transport.send_ping()

    def shutdown(self) -> None:
        """uvicorn's call on SIGTERM: go now, with the code that says come back."""
        self.close_now(1012, "server restarting; reconnect")

    def write(self, data: bytes) -> None:
        """Queue one text frame (`data` is its UTF-8); written out at the end of this turn."""
        if self.closed or self._transport is None:
            raise Disconnected()
        if not self._out:
            self._writes.mark(self)
        self._out.append(data)

    def flush(self) -> None:
        """Write the frames queued this turn in one go: one system call instead of one each."""
        frames, self._out = self._out, []
        if not frames or self._raw is None or self._raw.is_closing():
            return
        parts: list[bytes] = []
        for data in frames:
            parts.append(_text_header(len(data)))
            parts.append(data)
        self._raw.write(b"".join(parts))

    async def send(self, data: bytes) -> None:
        """Write, first waiting while the transport is paused (catch-up of thousands)."""
        while not self.writable and not self.closed:
            self._resumed = asyncio.get_running_loop().create_future()
            try:
                await self._resumed
            finally:
                self._resumed = None
        self.write(data)

    async def close(self, code: int, reason: str = "") -> None:
        self.close_now(code, reason)

    # ------------------------------------------------------------ inside

    def _message(self, payload: bytes | memoryview) -> None:
        if self._frame_rate and not self._within_budget(payload):
            return  # waits in the backlog for the budget to refill
        self._deliver(payload)

    def _deliver(self, payload: bytes | memoryview) -> None:
        if self._on_message is not None:
            self._on_message(payload)  # parsed before picows reuses its buffer
            return
        if self._inbox is not None:
            self._inbox.append(bytes(payload))
            self._queued_bytes += len(payload)
            self._wake()
            if len(self._inbox) >= MAX_QUEUED_MESSAGES or self._queued_bytes >= MAX_QUEUED_BYTES:
                self.hold_input()  # the gateway is busy (catch-up): leave the rest in the kernel

    def _within_budget(self, payload: bytes | memoryview) -> bool:
        """Take one frame from the budget, or keep the frame for later and stop reading.

        A client sending frames faster than any person could (a flood of `read` or `typing`
        frames, which cost Python work each even when refused) is slowed by TCP instead of
        costing the other clients their share of the event loop. Frames picows had already
        read when the budget ran out wait in order (nothing is dropped) and are handled as
        it refills; only then is the socket read again."""
        if self._backlog:
            self._backlog.append(bytes(payload))
            return False
        self._refill()
        if self._frame_tokens >= 1:
            self._frame_tokens -= 1
            return True
        self._backlog.append(bytes(payload))
        if self._raw is not None and not self._input_held:
            self._raw.pause_reading()
        self._throttled = True
        self._refill_later()
        return False

    def _refill(self) -> None:
        now = time.monotonic()
        elapsed = now - self._frame_at
        self._frame_at = now
        self._frame_tokens = min(self._frame_burst, self._frame_tokens + elapsed * self._frame_rate)

    def _refill_later(self) -> None:
        wait = (1 - self._frame_tokens) / self._frame_rate
        asyncio.get_running_loop().call_later(wait, self._drain_backlog)

    def _drain_backlog(self) -> None:
        if self.closed:
            self._backlog.clear()
            return
        self._refill()
        while self._backlog and self._frame_tokens >= 1:
            self._frame_tokens -= 1
            self._deliver(self._backlog.popleft())
        if self._backlog:
            self._refill_later()
            return
        self._throttled = False
        if not self._input_held and self._raw is not None:
            self._raw.resume_reading()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._wake_writer()

    def _wake_writer(self) -> None:
        if self._resumed is not None and not self._resumed.done():
            self._resumed.set_result(None)

    def close_now(self, code: int, reason: str) -> None:
        transport = self._transport
        was_closed, self.closed = self.closed, True
        self._wake()
        if transport is None or was_closed:
            return
        self.flush()  # what was written goes out before the close frame
        transport.send_close(WSCloseCode(code), reason.encode()[:120])
        transport.disconnect()
