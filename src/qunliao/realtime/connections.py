"""Limits on the connections themselves, below HTTP routing and the gateway.

- `ConnectionGate` counts open TCP connections per process and per client address. A
  connection over the per-address cap is closed at once; one over the per-process cap is kept
  only if it asks for `/healthz` (within a small reserve), so a monitor still gets its answer
  while the server is full. The per-process cap stays below the file-descriptor limit.
- `LimitedHttp` is uvicorn's httptools protocol with a bound on the request head (over
  `HEAD_MAX` → 431) and on the time a request takes to arrive (head and body together,
  `REQUEST_TIMEOUT_S` of total time, not idle time → 408 or the connection is closed).

Each accepted connection holds one `Slot` of the gate; whichever protocol owns the transport
when it closes gives the slot back (HTTP, picows or uvicorn's own WebSocket).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# The key of the lifespan state under which the app puts its `ConnectionGate`.
GATE_KEY = "qunliao.connections"
HEAD_MAX = 64 * 1024
REQUEST_LINE_MAX = 8192
REQUEST_TIMEOUT_S = 60.0
HEALTH_RESERVE = 64  # connections past the process cap that may still ask for /healthz
LINGER_S = 2.0  # how long a refused client may go on sending before the connection closes
FD_RESERVE = 256  # descriptors kept for the database pool, logs, files and the reserve above
HEALTH_REQUEST_LINES = (b"GET /healthz ", b"GET /healthz?", b"HEAD /healthz ")

log = logging.getLogger(__name__)


def plain_response(status: int, reason: str, text: str) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection (written before any app runs)."""
    body = text.encode("utf-8")
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode("ascii") + body


TOO_BUSY = plain_response(503, "Service Unavailable", "too many connections, retry later\n")
HEAD_TOO_LARGE = plain_response(431, "Request Header Fields Too Large", "request head too large\n")
TOO_SLOW = plain_response(408, "Request Timeout", "request not complete in time\n")


class Slot:
    """One admitted connection; `release` is safe to call more than once."""

    __slots__ = ("_gate", "address", "over_cap")

    def __init__(self, gate: ConnectionGate, address: str, over_cap: bool) -> None:
        self._gate: ConnectionGate | None = gate
        self.address = address
        self.over_cap = over_cap  # admitted into the health reserve: /healthz only

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.release(self)


def descriptor_limit() -> int:
    """Raise this process's soft limit on open files to the hard one; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class ConnectionGate:
    """Counts open connections; decides whether a new one may stay."""

    def __init__(
        self,
        max_total: int,
        max_per_address: int,
        *,
        exempt: Callable[[str], bool] = lambda _address: False,
        fd_limit: int | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.request_timeout_s = request_timeout_s
        limit = descriptor_limit() if fd_limit is None else fd_limit
        room = max(1, limit - FD_RESERVE)
        if max_total > room:
            log.warning(
                "max_connections %d is above what %d open files allow: using %d",
                max_total,
                limit,
                room,
            )
        self.max_total = min(max_total, room)
        self.max_per_address = max_per_address
        self._exempt = exempt  # trusted proxies carry many clients' connections
        self.open = 0
        self.refused = 0
        self._per_address: dict[str, int] = {}

    def admit(self, address: str) -> Slot | None:
        """A slot for a new connection from `address`, or None: close it at once."""
        held = self._per_address.get(address, 0)
        if held >= self.max_per_address and not self._exempt(address):
            self.refused += 1
            return None
        if self.open >= self.max_total + HEALTH_RESERVE:
            self.refused += 1
            return None
        self.open += 1
        self._per_address[address] = held + 1
        return Slot(self, address, over_cap=self.open > self.max_total)

    def release(self, slot: Slot) -> None:
        self.open -= 1
        held = self._per_address.get(slot.address, 0) - 1
        if held > 0:
            self._per_address[slot.address] = held
        else:
            self._per_address.pop(slot.address, None)

    def addresses(self) -> int:
        return len(self._per_address)


def peer_address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "unix" if peer is not None else "?"


def is_health_request(head: bytes) -> bool:
    return head.startswith(HEALTH_REQUEST_LINES)


def refuse(transport: asyncio.BaseTransport, answer: bytes | None = None) -> None:
    """Close at once, or after writing `answer`: then half-close and close a moment later,
    so that a client still sending its request reads the answer instead of a reset. The
    protocol must ignore what still arrives."""
    transport = cast(asyncio.Transport, transport)
    if answer is None:
        transport.close()
        return
    if answer:
        transport.write(answer)
    if transport.can_write_eof():
        transport.write_eof()
    asyncio.get_running_loop().call_later(LINGER_S, transport.close)


def hand_over(slot: Slot | None, protocol: Any) -> None:
    """Make `protocol` (which now owns the transport) give `slot` back when it closes."""
    if slot is None:
        return
    lost = protocol.connection_lost

    def connection_lost(exc: Exception | None) -> None:
        slot.release()
        lost(exc)

    protocol.connection_lost = connection_lost


class LimitedHttp(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with a bounded request head and a total request time."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        slot: Slot | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._slot = slot
        self._reading_head = False
        self._in_message = False  # between on_message_begin and on_message_complete
        self._head_too_large = False
        self._head_bytes = 0  # of the head being read, as the parser hands it over
        self._head_start = 0  # where it began, in bytes received on this connection
        self._received = 0
        self._chunk_start = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._early: bytes | None = None
        self._refused = False
        gate = app_state.get(GATE_KEY)
        self._gate = gate if isinstance(gate, ConnectionGate) else None
        self._timeout_s = self._gate.request_timeout_s if self._gate else REQUEST_TIMEOUT_S

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self._slot is None and self._gate is not None:
            # uvicorn built this protocol itself (the uvicorn engine: no HttpOrWebSocket first)
            self._slot = self._gate.admit(peer_address(transport))
            if self._slot is None:
                refuse(transport)
                return
            if self._slot.over_cap:
                self._early = b""  # hold the bytes until the request line shows /healthz
        super().connection_made(transport)
        self._arm_deadline()  # a client that connects and says nothing is not kept either

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        if self._slot is not None:
            self._slot.release()
        if self.transport is not None:  # None when connection_made refused it
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing() or self._refused:
            return  # refused: what still arrives is dropped
        if self._early is not None:
            self._early += data
            if b"\r\n" not in self._early and len(self._early) < REQUEST_LINE_MAX:
                return
            if not is_health_request(self._early):
                self._refuse(TOO_BUSY)  # the process is full: health checks only
                return
            data, self._early = self._early, None
        received = self._received
        self._received += len(data)
        self._chunk_start = received
        super().data_received(data)
        if self.transport.is_closing():
            return
        # Heads completed in this chunk were counted by the parser callbacks; one still
        # arriving is counted from the chunk it began in (the parser buffers it unseen).
        if self._head_too_large or (
            self._reading_head and self._received - self._head_start > HEAD_MAX
        ):
            self._refuse(HEAD_TOO_LARGE)
        elif not self._in_message and (self.cycle is None or self.cycle.response_complete):
            # Bytes that began no request (the parser skips blank lines) stopped uvicorn's
            # keep-alive timer: the request time runs instead, so CRLFs cannot hold a slot.
            self._arm_deadline()

    def handle_websocket_upgrade(self) -> None:
        if self._head_too_large:
            return  # data_received answers 431
        self._stop_deadline()
        slot, self._slot = self._slot, None
        transport = self.transport
        super().handle_websocket_upgrade()
        # uvicorn's WebSocket protocol now owns the transport: it gives the slot back.
        hand_over(slot, transport.get_protocol())

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = self._in_message = True
        self._head_start = self._chunk_start
        self._head_bytes = 0
        self._arm_deadline()

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > HEAD_MAX:
            self._head_too_large = True
        elif not self._head_too_large:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > HEAD_MAX:
            self._head_too_large = True
        elif not self._head_too_large:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        if not self._head_too_large:  # else no request starts: data_received answers 431
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._head_too_large:
            return
        if self.cycle is not None and self.cycle.response_complete and not self._refused:
            # Answered before the body was read (413 too_large, 401): read no more of it.
            # The connection closes a moment later, when the client has had the answer.
            self._stop_deadline()
            self._refused = True
            self.transport.pause_reading()
            refuse(self.transport, b"")
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._stop_deadline()
        if not self._head_too_large:
            super().on_message_complete()

    # ------------------------------------------------------------ internals

    def _arm_deadline(self) -> None:
        if self._deadline is None and not self.transport.is_closing():
            self._deadline = self.loop.call_later(self._timeout_s, self._too_slow)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        # Still in the head: nothing has been answered, so say why. In the body the app
        # may be answering already; the connection just closes.
        if self._reading_head:
            self._refuse(TOO_SLOW)
        else:
            refuse(self.transport)

    def _refuse(self, answer: bytes) -> None:
        self._stop_deadline()
        self._refused = True
        refuse(self.transport, answer)
