"""Pieces for the multi-node fault tests: throwaway buses, a cluster of real `qunliao serve`
processes on a fresh PostgreSQL database, a failover TCP proxy, senders that retry with the same
client_txn_id, and the exactly-once checks.

Server processes come from tests/e2e/helpers.py (`ServerProcess`, `database`); settings the
tests need (a short poll interval, no rate limit) go into a qunliao.toml passed with --config.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from qunliao.sdk import (
    Client,
    QunliaoConnectionError,
    QunliaoError,
    RetryPolicy,
    WebSocketConnection,
)
from tests.e2e.helpers import (
    PASSWORD,
    REPO,
    ServerProcess,
    database,
    free_port,
    server_python,
)

REDIS_SERVER = "/usr/bin/redis-server"
NATS_SERVER = "/usr/sbin/nats-server"
BUS_KINDS = ["redis", "nats"]
POLL_INTERVAL_MS = 200
# Rate limits are per process; these tests push bursts through one user, so lift them.
TEST_SETTINGS: dict[str, Any] = {
    "poll_interval_ms": POLL_INTERVAL_MS,
    "rate_limit_per_s": 0,
    "log_level": "info",
}
SEND_RETRY = RetryPolicy(total=30.0, initial_delay=0.05, max_delay=0.5)
FAST_RECONNECT = RetryPolicy(initial_delay=0.05, max_delay=0.5)


# ---------------------------------------------------------------- throwaway buses


class BusServer:
    """A private redis-server or nats-server on a free port: kill -9 it, start it again on the
    same port. The shared ones on 6379/4222 are never touched."""

    def __init__(self, kind: str, workdir: Path, port: int | None = None) -> None:
        if kind not in BUS_KINDS:
            raise ValueError(kind)
        self.kind = kind
        self.port = port or free_port()
        self.log_path = workdir / f"{kind}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "redis" if self.kind == "redis" else "nats"
        return f"{scheme}://127.0.0.1:{self.port}" + ("/0" if self.kind == "redis" else "")

    def _command(self) -> list[str]:
        if self.kind == "redis":
            return [
                REDIS_SERVER,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ]
        return [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port)]

    def start(self, timeout: float = 10.0) -> None:
        binary = self._command()[0]
        if not os.path.exists(binary):
            reason = f"{binary} is not installed (the fault tests start their own {self.kind})"
            if os.environ.get("QUNLIAO_REQUIRE_SERVICES"):
                pytest.fail(reason)
            pytest.skip(reason)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self._command(), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} not ready on {self.port} in {timeout} s")
            time.sleep(0.02)

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    def _answers(self) -> bool:
        """Redis answers PING with +PONG; NATS greets every client with INFO."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                if self.kind == "redis":
                    conn.sendall(b"PING\r\n")
                    return conn.recv(16).startswith(b"+PONG")
                return conn.recv(5).startswith(b"INFO")
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    @contextmanager
    def running(self) -> Iterator[BusServer]:
        self.start()
        try:
            yield self
        finally:
            self.kill()


# ---------------------------------------------------------------- the cluster


def write_config(path: Path, settings: dict[str, Any]) -> Path:
    lines = ["[qunliao]"]
    for name, value in settings.items():
        # a JSON string or number is also a TOML one
        lines.append(f"{name} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextmanager
def cluster(
    workdir: Path,
    bus_url: str,
    nodes: int = 2,
    *,
    extra_args: list[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> Iterator[list[ServerProcess]]:
    """`nodes` gateways on one fresh PostgreSQL database and one bus; their logs are printed
    when the test fails. As in production, the schema is migrated first (`qunliao migrate`),
    then every gateway starts at once."""
    config = write_config(workdir / "qunliao.toml", {**TEST_SETTINGS, **(settings or {})})
    args = ["--bus-url", bus_url, "--config", str(config), *(extra_args or [])]
    with database("postgres", workdir) as database_url:
        migrate(database_url)
        servers = [ServerProcess(database_url, workdir, extra_args=args) for _ in range(nodes)]
        try:
            with concurrent.futures.ThreadPoolExecutor(nodes) as pool:
                for started in [pool.submit(server.start) for server in servers]:
                    started.result(timeout=60)
            yield servers
        except BaseException:
            for server in servers:
                print(f"--- server on {server.port} ---\n{server.log_tail(80)}")
            raise
        finally:
            for server in servers:
                server.stop()


def migrate(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUNLIAO_")}
    env["PYTHONPATH"] = str(REPO / "src")
    done = subprocess.run(
        [server_python(), "-m", "qunliao", "migrate", "--database-url", database_url],
        timeout=60,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"qunliao migrate failed:\n{done.stdout.decode()}{done.stderr.decode()}")


async def health(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=2.0) as http:
        response = await http.get(url + "/healthz")
        body: dict[str, Any] = response.json()
        return body


async def wait_bus_health(urls: list[str], healthy: bool, within: float) -> float:
    """Poll /healthz of every node until `bus.healthy` is `healthy` on all; returns seconds."""
    started = time.monotonic()
    while True:
        states = [(await health(url))["bus"]["healthy"] for url in urls]
        if all(state is healthy for state in states):
            return time.monotonic() - started
        if time.monotonic() - started > within:
            raise AssertionError(f"bus.healthy stayed {states} for {within} s, wanted {healthy}")
        await asyncio.sleep(0.05)


class FailoverProxy:
    """A tiny TCP load balancer: each new connection goes to the first backend that accepts,
    so when a gateway dies its clients' reconnects land on the next one (as behind HAProxy)."""

    def __init__(self, backend_ports: list[int]) -> None:
        self.backend_ports = backend_ports
        self.routed: Counter[int] = Counter()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FailoverProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # Close the sockets and let every pipe end by itself: cancelling a connection's task
        # makes asyncio log an error from inside its streams machinery.
        for writer in list(self._writers):
            writer.close()
        if self._pipes:
            await asyncio.wait(self._pipes, timeout=5)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        self._writers.add(writer)
        try:
            for port in self.backend_ports:
                try:
                    upstream = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", port), 2.0
                    )
                except (OSError, TimeoutError):
                    continue
                self.routed[port] += 1
                up_reader, up_writer = upstream
                self._writers.add(up_writer)
                try:
                    await asyncio.gather(
                        _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
                    )
                finally:
                    self._writers.discard(up_writer)
                return
        finally:
            writer.close()
            self._writers.discard(writer)
            self._pipes.discard(task)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    finally:
        sink.close()  # one side gone: drop the other too, as a crashed peer would


# ---------------------------------------------------------------- users


async def accounts(urls: list[str], names: list[str]) -> dict[str, Client]:
    """A fresh account per name, each logged in once (one device) at urls[i % len(urls)].
    Password hashing is the slow part, so it runs concurrently, spread over the nodes."""

    async def one(index: int, name: str) -> Client:
        url = urls[index % len(urls)]
        username = f"{name}_{secrets.token_hex(3)}"
        client = Client(url, timeout=5.0, retry=SEND_RETRY)
        await client.register(username, PASSWORD, name)
        await client.login(username, PASSWORD, device_name=f"{name}-dev")
        return client

    clients = await asyncio.gather(*(one(i, name) for i, name in enumerate(names)))
    return dict(zip(names, clients, strict=True))


def same_device(client: Client, url: str) -> Client:
    """The same device (same token and txn-id space) talking to another node."""
    other = Client(url, access_token=client.access_token, timeout=client.timeout, retry=SEND_RETRY)
    other.user_id, other.device_id = client.user_id, client.device_id
    return other


async def token_now(client: Client) -> str:
    """A sync token at the current end of everything `client` may see."""
    token = None
    while True:
        page = await client.sync(token, limit=1000)
        token = page.next_token
        if not page.events:
            return token


# ---------------------------------------------------------------- load


@dataclass
class Acked:
    sender: str
    txn: str
    conversation_id: str
    message_id: str
    seq: int
    attempts: int
    duplicate: bool = False  # answered as a repeat: committed before an earlier try broke


@dataclass
class Load:
    """What senders got acknowledged; senders run until `stop` is set."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    acked: list[Acked] = field(default_factory=list)

    def ids(self, conversation_id: str | None = None) -> list[str]:
        return [
            a.message_id
            for a in self.acked
            if conversation_id is None or a.conversation_id == conversation_id
        ]


async def http_sender(
    load: Load,
    name: str,
    client: Client,
    conversations: list[str],
    pace: float,
    gate: asyncio.Event | None = None,
) -> None:
    """One HTTP send at a time; the SDK retries each with its own client_txn_id until acked.
    While `gate` is clear the sender pauses."""
    index = 0
    while not load.stop.is_set():
        if gate is not None:
            await gate.wait()
        conversation_id = conversations[index % len(conversations)]
        txn = f"{name}-{index}-{secrets.token_hex(3)}"
        result = await client.send_text(conversation_id, txn, client_txn_id=txn)
        load.acked.append(
            Acked(
                name,
                txn,
                conversation_id,
                result.message_id,
                result.seq,
                result.attempts,
                result.duplicate,
            )
        )
        index += 1
        await asyncio.sleep(pace)


async def ws_sender(
    load: Load,
    name: str,
    client: Client,
    conversations: list[str],
    pace: float,
    gate: asyncio.Event | None = None,
    within: float = 30.0,
) -> None:
    """Sends over one socket; when it breaks, the same client_txn_id goes out again on a new
    socket (which the client's base URL, perhaps a load balancer, routes where it can)."""
    ws: WebSocketConnection | None = None
    index = 0
    try:
        while not load.stop.is_set():
            if gate is not None:
                await gate.wait()
            conversation_id = conversations[index % len(conversations)]
            txn = f"{name}-{index}-{secrets.token_hex(3)}"
            deadline = time.monotonic() + within
            attempts = 0
            while True:
                attempts += 1
                try:
                    if ws is None or ws.closed:
                        ws = client.websocket()
                        await ws.connect()
                    result = await ws.send_text(conversation_id, txn, txn, ack_timeout=5.0)
                    break
                except QunliaoError as error:
                    retryable = isinstance(error, QunliaoConnectionError) or error.code in (
                        "rate_limited",
                        "unavailable",
                    )
                    if not retryable or time.monotonic() > deadline:
                        raise
                    if ws is not None:
                        await ws.close()
                        ws = None
                    await asyncio.sleep(0.05 * min(attempts, 10))
            load.acked.append(
                Acked(name, txn, conversation_id, result.message_id, result.seq, attempts)
            )
            index += 1
            await asyncio.sleep(pace)
    finally:
        if ws is not None:
            await ws.close()


@dataclass
class Heard:
    """Message events one receiver got, with the monotonic time each arrived."""

    name: str
    events: list[dict[str, Any]] = field(default_factory=list)
    arrived: dict[str, float] = field(default_factory=dict)  # message text → arrival

    def add(self, event: dict[str, Any]) -> None:
        if event.get("type") != "message":
            return
        self.events.append(event)
        body = event.get("body") or {}
        self.arrived.setdefault(str(body.get("text")), time.monotonic())


async def receive(ws: WebSocketConnection, heard: Heard) -> None:
    """Collect from one socket until it is closed by us (or the server goes away)."""
    with contextlib.suppress(QunliaoConnectionError):
        async for event in ws.events():
            heard.add(event)


async def listen_into(client: Client, heard: Heard, since: str) -> None:
    """SDK `listen()` with auto-resume; dedupe off, so a server repeat would show."""
    events = client.listen(since=since, dedupe=False, reconnect=FAST_RECONNECT)
    async with contextlib.aclosing(events):
        async for event in events:
            heard.add(event)


async def wait_until(predicate: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------- checks


def check_exactly_once(heard: Heard, load: Load, conversations: list[str]) -> None:
    """Every acked message arrived exactly once, and each conversation's events came in seq
    order without a repeated seq."""
    wanted = set(load.ids())
    counts = Counter(e["message_id"] for e in heard.events if e["conversation_id"] in conversations)
    missing = wanted - set(counts)
    repeated = {m: n for m, n in counts.items() if n > 1}
    assert not missing, f"{heard.name}: {len(missing)} acked messages never arrived"
    assert not repeated, f"{heard.name}: {len(repeated)} messages arrived more than once"
    check_seq_order(heard.name, heard.events)


def check_seq_order(name: str, events: list[dict[str, Any]]) -> None:
    seqs: dict[str, list[int]] = defaultdict(list)
    for event in events:
        seqs[event["conversation_id"]].append(event["seq"])
    for conversation_id, order in seqs.items():
        assert order == sorted(order), f"{name}: {conversation_id} out of seq order"
        assert len(order) == len(set(order)), f"{name}: {conversation_id} repeated a seq"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
