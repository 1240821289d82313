"""Regressions from the review of the picows gateway (93c9cbd): one test per finding.

Process tests run against both engines (a module-scoped server per engine, as in
test_websocket_engines.py); a few in-process tests drive `fast_ws` / `gateway` directly where
the failure needs a fault (a database error) or a race that a real server cannot be made to hit
on demand. Each test says which engine(s) it fails on. About 100 s in all, most of it waiting
(test_server_probes_a_silent_socket sits 26 s per engine).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
import websockets
from multidict import CIMultiDict
from picows import WSUpgradeRequest

from qunliao.core.errors import ApiError
from qunliao.core.principal import Principal
from qunliao.core.streams import FrameHandler, Registry
from qunliao.core.tokens import encode_sync_token
from qunliao.realtime import fast_ws
from qunliao.realtime.fast_ws import STATE_KEY, GatewaySocket, HttpOrWebSocket, WebSocketRoute
from qunliao.realtime.gateway import Gateway, GatewayHandlers, SocketConnection
from tests.e2e.helpers import ServerProcess
from tests.process.engines import ENGINES, engine_server

PASSWORD = "correct horse"
PING_S = 2.0  # the heartbeat, shortened so a silent socket is probed within seconds
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HISTORY = 300  # 15 kB messages: enough that a catch-up to a reader that reads nothing stalls
BIG = "满" * 5000
OFFERED = 48 << 20  # bytes a client tries to push at a stalled socket
GROWTH_MB = 24  # the unbounded buffers grew the server by ~55 MB for the 48 MB offered


@pytest.fixture(scope="module", params=ENGINES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp(f"review-{request.param}")
    with engine_server(request.param, workdir, QUNLIAO_WS_PING_INTERVAL_S=str(PING_S)) as proc:
        yield proc


_names = iter(range(1_000_000))


async def _account(http: httpx.AsyncClient) -> str:
    name = f"review{next(_names)}"
    body = {"username": name, "password": PASSWORD, "display_name": name}
    assert (await http.post("/api/v1/accounts", json=body)).status_code == 201
    return name


async def _session(http: httpx.AsyncClient, name: str) -> dict[str, str]:
    r = await http.post("/api/v1/sessions", json={"username": name, "password": PASSWORD})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _auth(session: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}


@pytest.fixture(scope="module")
def history(server: ServerProcess) -> dict[str, Any]:
    """A group (alice, bob) with HISTORY big messages; bob's access is cached by the server."""

    async def build() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            alice_name, bob_name = await _account(http), await _account(http)
            alice, bob = await _session(http, alice_name), await _session(http, bob_name)
            r = await http.post("/api/v1/conversations", headers=_auth(alice), json={
                "kind": "group", "title": "review", "member_ids": [bob["user_id"]]})  # fmt: skip
            conversation = r.json()["conversation_id"]
            gate = asyncio.Semaphore(8)

            async def send(i: int) -> None:
                async with gate:
                    r = await http.post(
                        f"/api/v1/conversations/{conversation}/messages", headers=_auth(alice),
                        json={"client_txn_id": f"h{i}", "msg_type": "text",
                              "body": {"text": f"{i} {BIG}"}},
                    )  # fmt: skip
                    assert r.status_code == 201, r.text

            await asyncio.gather(*(send(i) for i in range(HISTORY)))
            # bob reads once: his membership is now cached, so WebSocket sends take the hot path
            r = await http.get(f"/api/v1/conversations/{conversation}/messages",
                               headers=_auth(bob), params={"limit": 1})  # fmt: skip
            assert r.status_code == 200
            return {"alice": alice, "bob_name": bob_name, "conversation": conversation}

    return asyncio.run(build())


# ---------------------------------------------------------------- raw WebSocket client


def _handshake(port: int, query: str, *, connection: str = "Upgrade",
               rcvbuf: int | None = None) -> tuple[socket.socket, bytes]:  # fmt: skip
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(5)
    sock.sendall(
        f"GET /api/v1/ws?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: {connection}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1 if rcvbuf else 4096)  # byte by byte: leave the frames unread
        if not chunk:
            break
        head += chunk
    return sock, head


def _client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame; the all-zero mask leaves the payload as it is."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


async def _assert_input_bounded(server: ServerProcess, sock: socket.socket, payload: bytes) -> None:
    """Offer OFFERED bytes of `payload` frames: the server process must not keep them."""
    assert server.proc is not None
    before = _rss_kb(server.proc.pid)
    accepted = await _push_at(sock, _client_frame(payload), OFFERED, 4)
    grown_mb = (_rss_kb(server.proc.pid) - before) / 1024
    # Kernel buffers (tcp_rmem up to 32 MB here) take what they take; the process must not.
    assert grown_mb < GROWTH_MB, f"server took {accepted >> 20} MB, RSS +{grown_mb:.0f} MB"


async def _push_at(sock: socket.socket, frame: bytes, total: int, seconds: float) -> int:
    """Write `frame` repeatedly (up to `total` bytes); how many bytes the server let in."""
    sock.setblocking(False)
    data = frame * max(1, total // len(frame))
    view = memoryview(data)
    sent = 0
    deadline = time.monotonic() + seconds
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += sock.send(view[sent : sent + (1 << 20)])
        except BlockingIOError:
            await asyncio.sleep(0.05)
    return sent


def _read_until(sock: socket.socket, marker: bytes, seconds: float) -> bytes:
    sock.setblocking(True)
    sock.settimeout(seconds)
    got = b""
    try:
        while marker not in got:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got += chunk
    except TimeoutError:
        pass
    return got


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- 1. Firefox's handshake


def test_firefox_handshake_connection_keep_alive_upgrade(server: ServerProcess) -> None:
    """Firefox sends `Connection: keep-alive, Upgrade`; picows wants exactly `upgrade` (400).

    Failed on picows before the fix."""
    sock, head = _handshake(server.port, "access_token=nope", connection="keep-alive, Upgrade")
    sock.close()
    assert head.startswith(b"HTTP/1.1 101"), head[:200]


# ---------------------------------------------------------------- 2. plain GET on the path


async def test_plain_get_on_the_gateway_path_answers_the_json_error_shape(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    """A GET /api/v1/ws without Upgrade goes to picows, which answers 400 text/plain.

    Failed on picows before the fix (uvicorn's engine: 404 with the API's JSON error)."""
    r = await http.get("/api/v1/ws")
    assert r.headers.get("content-type", "").startswith("application/json"), (r.status_code, r.text)
    assert r.json()["error"]["code"]


# ---------------------------------------------------------------- 3. input before `listen`


async def test_stalled_catch_up_does_not_buffer_unbounded_input(
    server: ServerProcess, http: httpx.AsyncClient, history: dict[str, Any]
) -> None:
    """While the catch-up waits on a reader that reads nothing, picows keeps reading and every
    frame lands in GatewaySocket._inbox (no limit); uvicorn stops reading.

    Failed on picows before the fix."""
    bob = await _session(http, history["bob_name"])
    sock, head = _handshake(server.port, f"since={encode_sync_token(0)}&"
                            f"access_token={bob['access_token']}", rcvbuf=4096)  # fmt: skip
    assert head.startswith(b"HTTP/1.1 101")
    try:
        await asyncio.sleep(1.5)  # the catch-up has filled every buffer and waits
        await _assert_input_bounded(server, sock, b" " * (256 << 10))
    finally:
        sock.close()


# ---------------------------------------------------------------- 4. input during late resume


async def test_late_resume_does_not_hold_unbounded_input(
    server: ServerProcess, http: httpx.AsyncClient, history: dict[str, Any]
) -> None:
    """Frames that arrive while a late resume is replaying go to conn.held (no limit), on both
    engines: before 93c9cbd the receiver awaited the replay, so uvicorn stopped reading.

    Failed on both engines before the fix (a regression for uvicorn's too)."""
    bob = await _session(http, history["bob_name"])
    sock, head = _handshake(server.port, f"access_token={bob['access_token']}", rcvbuf=4096)
    assert head.startswith(b"HTTP/1.1 101")
    try:
        await asyncio.sleep(0.5)  # live already: the resume below is a late one
        resume = {"type": "resume", "since": encode_sync_token(0)}
        sock.sendall(_client_frame(orjson.dumps(resume)))
        await asyncio.sleep(1.5)  # the replay has filled every buffer and waits
        json_string = b'"' + b"a" * ((256 << 10) - 2) + b'"'  # parsed, then held as a str
        await _assert_input_bounded(server, sock, json_string)
    finally:
        sock.close()


# ---------------------------------------------------------------- 5. revoked during catch-up


async def test_sends_after_logout_are_not_stored(
    server: ServerProcess, http: httpx.AsyncClient, history: dict[str, Any]
) -> None:
    """A session revoked while its socket is in catch-up: picows keeps reading, and `listen`
    dispatches the queued frames (commits them) before the socket closes with 4401.

    Failed on picows before the fix."""
    bob = await _session(http, history["bob_name"])
    conversation = history["conversation"]
    sock, head = _handshake(server.port, f"since={encode_sync_token(0)}&"
                            f"access_token={bob['access_token']}", rcvbuf=4096)  # fmt: skip
    assert head.startswith(b"HTTP/1.1 101")
    tag = f"after-logout-{bob['device_id']}"
    try:
        await asyncio.sleep(1.5)  # stalled in the catch-up
        logout = await http.delete("/api/v1/sessions/current", headers=_auth(bob))
        assert logout.status_code == 204
        await asyncio.sleep(0.3)
        # The server may have closed the socket at the revocation already (it does now):
        # then these sends fail, which is as good as refused.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for i in range(3):
                sock.sendall(_client_frame(orjson.dumps({
                    "type": "send", "conversation_id": conversation,
                    "client_txn_id": f"{tag}-{i}", "msg_type": "text",
                    "body": {"text": f"{tag} {i}"},
                })))  # fmt: skip
            _read_until(sock, b"session revoked", 20)  # the catch-up finishes, then 4401
    finally:
        sock.close()
    await asyncio.sleep(0.5)
    r = await http.get(f"/api/v1/conversations/{conversation}/messages",
                       headers=_auth(history["alice"]), params={"limit": 20})  # fmt: skip
    stored = [m["body"]["text"] for m in r.json()["messages"] if m["body"]]
    after_logout = [t for t in stored if t.startswith(tag)]
    assert not after_logout, f"stored after the 204: {after_logout}"


# ---------------------------------------------------------------- 6. idle dead peers


async def test_server_probes_a_silent_socket(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    """uvicorn pings every socket after 20 s idle and drops it 20 s later without a pong;
    picows is built with enable_auto_ping=False, so a vanished client (no FIN: mobile, NAT)
    stays registered forever (hub, per-IP count, max_connections slot, fd, buffers).

    Failed on picows before the fix (takes ~25 s per engine)."""
    name = await _account(http)
    session = await _session(http, name)
    sock, head = _handshake(server.port, f"access_token={session['access_token']}")
    assert head.startswith(b"HTTP/1.1 101")
    try:
        got = _read_until(sock, b"\x89", 26)  # a PING frame from the server (first byte 0x89)
        assert b"\x89" in got, "the server never probed a socket that stayed silent for 26 s"
    finally:
        sock.close()


async def test_a_quiet_client_that_answers_pings_stays_connected(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    """The heartbeat drops only the silent: a client that says nothing but answers pings
    (every browser and the SDK do) keeps its socket across several intervals."""
    name = await _account(http)
    session = await _session(http, name)
    url = server.url.replace("http", "ws") + f"/api/v1/ws?access_token={session['access_token']}"
    async with websockets.connect(url, ping_interval=None) as ws:
        assert orjson.loads(await ws.recv())["type"] == "synced"
        await asyncio.sleep(PING_S * 3.5)
        await ws.send(orjson.dumps({"type": "ping"}).decode())
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}


# ---------------------------------------------------------------- 7. SIGTERM and long polls


@pytest.mark.parametrize("engine", ENGINES)
async def test_sigterm_closes_websockets_at_once_despite_a_long_poll(
    tmp_path: Path, engine: str
) -> None:
    """uvicorn's engine closes sockets with 1012 as SIGTERM arrives; picows sockets (not in
    server_state.connections) are closed only by the lifespan's close_all, after in-flight
    HTTP requests finish — a /sync long poll holds them open for up to shutdown_timeout_s.

    Failed on picows before the fix (1012 arrives ~6 s late)."""
    server = ServerProcess(f"sqlite:///{tmp_path / 'q.db'}", tmp_path,
                           env={"QUNLIAO_WEBSOCKET_ENGINE": engine})  # fmt: skip
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            session = await _session(http, await _account(http))
            ws_base = server.url.replace("http", "ws")
            url = f"{ws_base}/api/v1/ws?access_token={session['access_token']}"
            async with websockets.connect(url) as ws:
                synced = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                assert synced["type"] == "synced"
                poll = asyncio.create_task(http.get("/api/v1/sync", headers=_auth(session),
                    params={"since": synced["next_token"], "timeout_ms": 6000}))  # fmt: skip
                await asyncio.sleep(0.5)
                assert server.proc is not None
                server.proc.send_signal(signal.SIGTERM)
                began = time.monotonic()
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(ws.recv(), 15)
                waited = time.monotonic() - began
            await asyncio.gather(poll, return_exceptions=True)
        rcvd = closed.value.rcvd
        assert rcvd is not None and rcvd.code == 1012
        assert waited < 2, f"1012 came {waited:.1f} s after SIGTERM"
    finally:
        server.stop()


# ---------------------------------------------------------------- edge cases that hold


async def test_sniffing_edge_cases_behave_like_uvicorn(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    """Passes on both engines: split request line, pipelined HTTP, upgrade on a keep-alive
    connection, and near-miss paths."""
    session = await _session(http, await _account(http))
    upgrade = (
        f"s?access_token={session['access_token']} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    ).encode()
    # the request line split across packets
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /api/v1/w")
        await asyncio.sleep(0.2)
        sock.sendall(upgrade)
        got = _read_until(sock, b"synced", 5)
        assert got.startswith(b"HTTP/1.1 101") and b"synced" in got
    # two pipelined requests in one packet
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        await asyncio.sleep(0.5)
        got = _read_until(sock, b"never", 1)
        assert got.count(b"HTTP/1.1 200") == 2
    # an upgrade after a keep-alive request (served by uvicorn's WebSocket, same gateway)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200" in _read_until(sock, b"}", 5)
        sock.sendall(b"GET /api/v1/w" + upgrade)
        got = _read_until(sock, b"synced", 5)
        assert b"101" in got and b"synced" in got
    # near misses are not the gateway
    for path in ("/api/v1/ws/", "/api/v1/wsx"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(f"GET {path}".encode() + upgrade[1:])  # upgrade starts with "s?..."
            head = _read_until(sock, b"\r\n\r\n", 5)
        assert head.startswith(b"HTTP/1.1 4"), (path, head[:80])


# ---------------------------------------------------------------- 8. handler failure (in-process)


async def test_picows_socket_closes_when_the_gateway_task_fails() -> None:
    """An exception in the gateway's coroutine (a database error in authenticate, max_position or
    the catch-up) ends the task created in on_ws_connected, and nobody closes the socket: it
    stays open, answers pings and never carries an event. uvicorn closes the socket when the
    ASGI app raises.

    Failed before the fix (picows engine; in-process, with the committed fast_ws)."""

    async def failing(sock: GatewaySocket) -> None:
        await sock.accept()
        raise RuntimeError("database unavailable")

    route = WebSocketRoute("/api/v1/ws", failing)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    config = SimpleNamespace(timeout_keep_alive=5)
    state = SimpleNamespace(connections=set())
    listener = await loop.create_server(
        lambda: HttpOrWebSocket(config, state, {STATE_KEY: route}, loop), "127.0.0.1", 0
    )
    port = listener.sockets[0].getsockname()[1]
    closed = await _closes_within(f"ws://127.0.0.1:{port}/api/v1/ws", 3)
    listener.close()
    await asyncio.sleep(0.1)
    gc.collect()  # log "Task exception was never retrieved" now, not inside pytest's ast.parse
    assert closed, "the socket stayed open (3 s) after the gateway task failed"


async def _closes_within(url: str, seconds: float) -> bool:
    async with websockets.connect(url) as ws:
        try:
            await asyncio.wait_for(ws.recv(), seconds)
        except websockets.ConnectionClosed:
            return True
        except TimeoutError:
            return False
    return False


# ---------------------------------------------------------------- 9. writes after 4008 (unit)


class _FakeWSTransport:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, _kind: Any, data: bytes) -> None:
        self.frames.append(bytes(data))

    def send_reuse_external_bytearray(self, _kind: Any, frame: bytearray, offset: int) -> None:
        self.frames.append(bytes(frame[offset:]))

    def send_close(self, *_args: Any) -> None:
        self.closed = True

    def disconnect(self, *_args: Any) -> None:
        self.disconnected = True


def _gateway_socket() -> GatewaySocket:
    request = WSUpgradeRequest()
    request.path = b"/api/v1/ws"
    request.headers = CIMultiDict()

    async def handler(_sock: GatewaySocket) -> None:
        return None

    try:
        return GatewaySocket(request, "127.0.0.1", handler)
    except TypeError:  # the uncommitted WriteCoalescer change adds an argument
        return GatewaySocket(request, "127.0.0.1", handler, fast_ws.WriteCoalescer())  # type: ignore[attr-defined,call-arg]


async def test_no_event_is_written_after_the_4008_token_is_fixed() -> None:
    """close_soon(4008) fixes the resume token at `sent` but leaves the queue; if the transport
    drains before the gateway task gets to close the socket, resume_writing → _flush writes
    the queued events (and moves `sent`), and the client resumes from the older token: each
    of them arrives twice. The same _flush writes to a socket closed with 4401 or 1012.

    Failed before the fix (picows engine; in-process)."""
    sock = _gateway_socket()
    transport = _FakeWSTransport()
    sock._transport = transport  # type: ignore[assignment]
    sock._raw = SimpleNamespace(is_closing=lambda: False, write=transport.frames.append)  # WIP tree
    conn = SocketConnection(sock, Principal(user_id="u", device_id="d"), queue_limit=2)
    conn.live = True
    sock.pause_writing()
    for pos in (1, 2, 3):  # the third does not fit: 4008
        conn.push(pos, orjson.dumps({"pos": pos}), "s")
    assert conn.closing is not None and conn.closing[0] == 4008
    token = conn.closing[1].rsplit("since=", 1)[1]
    sock.resume_writing()  # the kernel took the backlog before the gateway task ran
    await asyncio.sleep(0.01)  # (b1ca647 gathers writes until the end of the loop turn)
    assert transport.frames == [], (
        f"{len(transport.frames)} events written after the client was told since={token}"
    )


# ---------------------------------------------------------------- 10. late resume failure (unit)


class _Hub:
    pos = 10

    def register(self, _conn: Any) -> None: ...

    def unregister(self, _conn: Any) -> None: ...


class _Socket:
    """Stands in for uvicorn's RawSocket (the late resume code is shared by both engines)."""

    client_host = "127.0.0.1"

    def __init__(self) -> None:
        self.headers = {"authorization": "Bearer t"}
        self.query: dict[str, str] = {}
        self.inbox: asyncio.Queue[str] = asyncio.Queue()
        self.sent: list[bytes] = []
        self.closed_with: tuple[int, str] | None = None

    async def accept(self) -> None: ...

    async def receive_text(self) -> str:
        return await self.inbox.get()

    async def send(self, data: bytes) -> None:
        self.sent.append(data)

    async def close(self, code: int, reason: str = "") -> None:
        self.closed_with = (code, reason)


async def test_a_failed_late_resume_does_not_leave_a_silent_socket() -> None:
    """_late_resume runs as a spawned task: if the replay raises (a database error), the task
    dies unobserved with conn.live False — the socket stays open and never gets another
    event. Before 93c9cbd the receiver awaited the replay, so the error ended the socket.

    Failed on both engines before the fix (in-process)."""
    calls = 0

    async def events_for_user(_user: str, cursor: int, _limit: int) -> tuple[list[Any], int]:
        nonlocal calls
        if cursor < _Hub.pos:  # the late resume's replay, from position 0
            calls += 1
            raise RuntimeError("database unavailable")
        return [], cursor

    async def authenticate(_token: str) -> Principal:
        return Principal(user_id="u", device_id="d")

    handlers = GatewayHandlers(authenticate, events_for_user, Registry())
    gateway = Gateway(_Hub(), handlers)  # type: ignore[arg-type]
    sock = _Socket()
    served = asyncio.create_task(gateway.endpoint(sock))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.3)  # live (the first-frame wait is over)
        resume = {"type": "resume", "since": encode_sync_token(0)}
        await sock.inbox.put(orjson.dumps(resume).decode())
        await asyncio.sleep(0.5)
        assert calls == 1
        assert served.done() or sock.closed_with is not None, (
            "the late resume failed; the socket is still open but no longer live"
        )
    finally:
        served.cancel()
        await asyncio.gather(served, return_exceptions=True)
        gc.collect()


async def test_a_failing_frame_handler_answers_with_an_error_frame() -> None:
    """A `read` or `typing` frame whose handler fails used to die in its task unobserved
    (issue 14, item 9): every registered frame now gets an error frame back."""

    async def authenticate(_token: str) -> Principal:
        return Principal(user_id="u", device_id="d")

    async def nothing_missed(_user: str, cursor: int, _limit: int) -> tuple[list[Any], int]:
        return [], cursor

    async def broken(_caller: Principal, _frame: dict[str, Any]) -> None:
        raise RuntimeError("database went away")

    async def refused(_caller: Principal, _frame: dict[str, Any]) -> None:
        raise ApiError("forbidden", "not a member")

    registry = Registry()
    registry.add_frame("read", FrameHandler(broken))
    registry.add_frame("typing", FrameHandler(refused))
    gateway = Gateway(_Hub(), GatewayHandlers(authenticate, nothing_missed, registry))  # type: ignore[arg-type]
    sock = _Socket()
    served = asyncio.create_task(gateway.endpoint(sock))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.3)
        await sock.inbox.put('{"type": "read", "conversation_id": "c_1", "seq": 1}')
        await sock.inbox.put('{"type": "typing", "conversation_id": "c_1", "typing": true}')
        for _ in range(50):
            errors = [f for f in map(orjson.loads, sock.sent) if f.get("type") == "error"]
            if len(errors) == 2:
                break
            await asyncio.sleep(0.02)
        assert sorted(e["error"]["code"] for e in errors) == ["forbidden", "internal"]
    finally:
        served.cancel()
        await asyncio.gather(served, return_exceptions=True)
