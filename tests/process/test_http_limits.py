"""Limits below routing (issue 14, items 3 and 9): request heads, request time, connection caps.

A real `qunliao serve` per WebSocket engine (the engine decides which protocol reads the
request first). Clients connect from distinct loopback addresses (127.0.0.x) so each test has
its own per-address count. About 25 s per engine.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Iterator

import pytest
from multidict import CIMultiDict
from picows import WSUpgradeRequest

from qunliao.realtime import fast_ws
from qunliao.realtime.connections import ConnectionGate
from qunliao.realtime.fast_ws import GatewaySocket
from tests.e2e.helpers import ServerProcess
from tests.process.engines import ENGINES, engine_server

TIMEOUT_S = 2.0
PER_ADDRESS = 8
TOTAL = 12
_addresses = itertools.count(10)


@pytest.fixture(scope="module", params=ENGINES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp(f"limits-{request.param}")
    env = {"QUNLIAO_REQUEST_TIMEOUT_S": str(TIMEOUT_S)}
    with engine_server(request.param, workdir, **env) as proc:
        yield proc


def new_address() -> str:
    return f"127.0.0.{next(_addresses)}"


def connect(server: ServerProcess, address: str) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", server.port), timeout=10, source_address=(address, 0)
    )
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything the server writes until it closes or answers (10 s at most)."""
    sock.settimeout(10.0)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and b"connection: close" not in data.lower():
                break  # a keep-alive answer: the server will not close
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def closed(sock: socket.socket, within_s: float) -> bytes | None:
    """What the server wrote before closing, or None if it still holds the connection."""
    sock.settimeout(within_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return data


def health(server: ServerProcess, address: str, sock: socket.socket | None = None) -> bytes:
    sock = sock or connect(server, address)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: q\r\n\r\n")
    return answer(sock)


def test_a_head_over_64_kib_gets_431_and_a_smaller_one_is_served(server: ServerProcess) -> None:
    address = new_address()
    with connect(server, address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: q\r\n")
        for _ in range(80):  # 80 lines of 1 KiB: no single line is large
            sock.sendall(b"X-Pad: " + b"a" * 1017 + b"\r\n")
        sock.sendall(b"\r\n")
        reply = closed(sock, 5)
        assert reply is not None and reply.startswith(b"HTTP/1.1 431"), reply
    with connect(server, address) as sock:
        pad = b"X-Pad: " + b"a" * 30_000 + b"\r\n"
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: q\r\n" + pad + b"\r\n")
        assert answer(sock).startswith(b"HTTP/1.1 200"), "a 30 KiB head is allowed"


def test_a_handshake_with_a_head_too_large_for_the_gateway_is_answered(
    server: ServerProcess,
) -> None:
    with connect(server, new_address()) as sock:
        sock.sendall(
            b"GET /api/v1/ws HTTP/1.1\r\nHost: q\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            + b"X-Pad: "
            + b"a" * 70_000
            + b"\r\n\r\n"
        )
        reply = closed(sock, 5)
        assert reply is not None and reply.startswith(b"HTTP/1.1 431"), reply


def test_a_slow_head_is_cut_off_after_the_total_time_limit(server: ServerProcess) -> None:
    """Each line arrives well inside any idle timeout; the whole head never does."""
    with connect(server, new_address()) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: q\r\n")
        reply = None
        while time.monotonic() - started < TIMEOUT_S * 4:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                reply = b""
                break
            reply = closed(sock, 0.3)
            if reply is not None:
                break
        elapsed = time.monotonic() - started
    assert reply is not None, "the slow head was never cut off"
    assert TIMEOUT_S * 0.9 < elapsed < TIMEOUT_S * 3
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply


def test_a_slow_body_is_cut_off_after_the_total_time_limit(server: ServerProcess) -> None:
    with connect(server, new_address()) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /api/v1/accounts HTTP/1.1\r\nHost: q\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        reply = None
        while time.monotonic() - started < TIMEOUT_S * 4:
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                reply = b""
                break
            reply = closed(sock, 0.3)
            if reply is not None:
                break
        elapsed = time.monotonic() - started
    assert reply is not None, "the slow body was never cut off"
    assert TIMEOUT_S * 0.9 < elapsed < TIMEOUT_S * 3


def test_blank_lines_do_not_hold_a_connection(server: ServerProcess) -> None:
    """The parser skips CRLFs before a request without starting one, and each of them used to
    stop uvicorn's keep-alive timer: a client could hold a slot forever (found in review)."""
    with connect(server, new_address()) as sock:
        started = time.monotonic()
        reply = None
        while time.monotonic() - started < TIMEOUT_S * 6:
            try:
                sock.sendall(b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                reply = b""
                break
            reply = closed(sock, 0.5)
            if reply is not None:
                break
        elapsed = time.monotonic() - started
    assert reply is not None, "blank lines kept the connection open"
    assert elapsed < TIMEOUT_S * 5


def test_a_body_refused_early_is_not_read_on(server: ServerProcess) -> None:
    """413 goes out after the first MiB; the remaining 63 MiB are not read (the connection
    closes a moment later instead), so a client cannot make the server swallow gigabytes."""
    with connect(server, new_address()) as sock:
        sock.sendall(
            b"POST /api/v1/accounts HTTP/1.1\r\nHost: q\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"100000\r\n" + b"a" * 0x100000 + b"\r\n"
        sock.settimeout(5)
        sent = 0
        started = time.monotonic()
        try:
            while sent < 64 and time.monotonic() - started < 10:
                sock.sendall(chunk)
                sent += 1
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass
        assert sent < 64, "the server read the whole 64 MiB"
        reply = closed(sock, 5)
        assert reply is not None, "the connection stays open"
        assert reply.startswith(b"HTTP/1.1 413") or reply == b"", reply


@pytest.fixture(scope="module", params=ENGINES)
def capped(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Small connection caps and the default 60 s request time: a connection that never
    finishes its request head stays open (and counted) for the whole test."""
    workdir = tmp_path_factory.mktemp(f"caps-{request.param}")
    env = {
        "QUNLIAO_MAX_CONNECTIONS": str(TOTAL),
        "QUNLIAO_MAX_CONNECTIONS_PER_IP": str(PER_ADDRESS),
    }
    with engine_server(request.param, workdir, **env) as proc:
        yield proc


def hold(server: ServerProcess, address: str) -> socket.socket:
    """A connection whose request head never ends: the server keeps it open."""
    sock = connect(server, address)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: q\r\n")
    return sock


def test_one_address_holds_at_most_its_cap_and_others_are_still_served(
    capped: ServerProcess,
) -> None:
    greedy = new_address()
    held = [hold(capped, greedy) for _ in range(PER_ADDRESS)]
    try:
        time.sleep(0.5)
        with connect(capped, greedy) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: q\r\n\r\n")
            assert closed(extra, 10) == b"", "over the per-address cap: closed, no answer"
        assert health(capped, new_address()).startswith(b"HTTP/1.1 200")
        assert all(closed(sock, 0.05) is None for sock in held), "the held ones stay open"
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    assert health(capped, greedy).startswith(b"HTTP/1.1 200"), "closing gives the slots back"


def test_a_full_process_still_answers_healthz_and_refuses_the_rest(capped: ServerProcess) -> None:
    held: list[socket.socket] = []
    try:
        while len(held) < TOTAL:
            address = new_address()
            held += [hold(capped, address) for _ in range(min(PER_ADDRESS - 1, TOTAL - len(held)))]
        time.sleep(0.5)
        with connect(capped, new_address()) as other:
            other.sendall(b"GET /api/v1/me HTTP/1.1\r\nHost: q\r\n\r\n")
            reply = closed(other, 10)
            assert reply is not None and reply.startswith(b"HTTP/1.1 503"), reply
        assert health(capped, new_address()).startswith(b"HTTP/1.1 200"), "room for /healthz"
    finally:
        for sock in held:
            sock.close()


def test_the_connection_cap_stays_below_the_descriptor_limit() -> None:
    gate = ConnectionGate(50_000, 1_000, fd_limit=20_000)
    assert gate.max_total < 20_000
    slots = [gate.admit("127.0.0.1") for _ in range(1_000)]
    assert all(slots) and gate.admit("127.0.0.1") is None
    for slot in slots:
        assert slot is not None
        slot.release()
        slot.release()  # twice is harmless
    assert gate.open == 0 and gate.addresses() == 0


def test_a_client_fault_logs_a_rate_limited_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="qunliao.websocket")
    fast_ws._picows_log.quiet_until = 0.0
    for _ in range(50):
        fast_ws._picows_log.error("WS parser error: %s, initiate disconnect", ("too big",))
    records = [r for r in caplog.records if "WS parser error" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    fast_ws._picows_log.quiet_until = 0.0
    fast_ws._picows_log.error("WS parser error: %s, initiate disconnect", ("again",))
    assert "49 more like this" in caplog.records[-1].getMessage()


class _Raw:
    """The raw transport under a picows socket: records pause/resume."""

    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return False


async def test_a_socket_sending_frames_past_its_budget_is_read_no_further_until_it_refills() -> (
    None
):
    """A flood of cheap frames (read, typing, ping) costs Python work each even when refused:
    past its budget the socket is not read (TCP slows the client), then read again."""
    request = WSUpgradeRequest()
    request.path = b"/api/v1/ws"
    request.headers = CIMultiDict()

    async def handler(_sock: GatewaySocket) -> bool:
        return True

    rate, burst = 200.0, 40.0
    sock = GatewaySocket(
        request, "127.0.0.1", handler, fast_ws.WriteCoalescer(), None, (rate, burst)
    )
    raw = _Raw()
    sock._raw = raw  # type: ignore[assignment]
    seen: list[bytes] = []
    sock.listen(lambda m: seen.append(bytes(m)))
    for _ in range(int(burst)):
        sock._message(b'{"type":"ping"}')
    assert not raw.paused, "a burst within the budget is read on"
    sock._message(b'{"type":"ping"}')
    sock._message(b'{"type":"ping"}')
    assert raw.paused and raw.pauses == 1
    assert len(seen) == burst, "frames past the budget wait…"
    await asyncio.sleep(3 / rate + 0.05)
    assert len(seen) == burst + 2, "…and are handled as it refills, none dropped"
    assert not raw.paused, "read again once the backlog is handled"
    sock.hold_input()  # the gateway's own hold (a late resume) is kept while throttled…
    sock._message(b'{"type":"ping"}')
    sock._message(b'{"type":"ping"}')
    await asyncio.sleep(3 / rate + 0.05)
    assert raw.paused, "…and not lifted when the budget refills"
    sock.release_input()
    assert not raw.paused
