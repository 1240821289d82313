"""The crash loop: two gateways on PostgreSQL + Redis, kill -9 again and again, count the damage.

    .venv/bin/python -m bench.crash_loop [--messages 10000] [--senders 8] [--kills 70]
                                         [--deadline 600] [--seed N]

Eight senders (half over HTTP, half over a WebSocket; half starting on each node) send
10,000 messages in all into one group, each message waiting for its ack before the next. A
killer `kill -9`s a random gateway at random moments — at least 70 times — and starts it again
on the same port right away. A sender whose node goes away sends the same client_txn_id again,
to whichever node answers, until it gets an ack. A listener follows the group over a WebSocket
with resume tokens, failing over between the nodes the same way.

At the end it reads the group's history and prints

    acked       sends that got an ack (must equal --messages)
    lost        acked messages missing from the history, or stored under another message_id
    duplicated  client_txn_ids stored more than once
    reordered   a sender's message stored before one it sent (and had acked) earlier
    unacked     stored messages whose send never got an ack (0: every send retries to the end)

plus the listener's missing/repeated counts, kills, retries and wall time. All but acked must
be 0. It needs PostgreSQL (QUNLIAO_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1
:5432/postgres, a fresh database is made and dropped) and /usr/bin/redis-server (a private one
on a free port). Not part of CI: it takes minutes. It gives up after --deadline seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from qunliao.sdk import (
    Client,
    QunliaoConnectionError,
    QunliaoError,
    RetryPolicy,
    SendResult,
    WebSocketConnection,
)

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
PG_ADMIN = os.environ.get(
    "QUNLIAO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_SERVER = "/usr/bin/redis-server"
PASSWORD = "crash loop password"
ONCE = RetryPolicy(total=0)  # one try per node; failover is ours


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUNLIAO_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    env.update({f"QUNLIAO_{k.upper()}": v for k, v in settings.items()})
    return env


# ---------------------------------------------------------------- processes


class Node:
    """One `qunliao serve`; kill -9 and start again on the same port."""

    def __init__(self, name: str, database_url: str, bus_url: str, workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            PYTHON,
            "-m",
            "qunliao",
            "serve",
            "--port",
            str(self.port),
            "--database-url",
            database_url,
            "--bus-url",
            bus_url,
        ]
        self.env = server_env(
            rate_limits="off", rate_limit_per_s="0", poll_interval_ms="200", log_level="warning"
        )
        self.log: IO[bytes] = (workdir / f"{name}.log").open("ab")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.up = asyncio.Event()

    def spawn(self) -> None:
        self.proc = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1

    async def wait_healthy(self, within: float = 60.0) -> float:
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=1.0) as http:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.url + "/healthz")).status_code == 200:
                        self.up.set()
                        return time.monotonic() - started
                if time.monotonic() - started > within:
                    raise RuntimeError(f"{self.name} not healthy within {within} s")
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        self.up.clear()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@contextlib.contextmanager
def private_redis(workdir: Path) -> Any:
    port = free_port()
    log = (workdir / "redis.log").open("ab")
    proc = subprocess.Popen(
        [
            REDIS_SERVER,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), 1) as c,
            ):
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()


@contextlib.asynccontextmanager
async def fresh_database() -> Any:
    name = f"qunliao_crash_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(PG_ADMIN, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlsplit(PG_ADMIN)._replace(path="/" + name).geturl()
    finally:
        admin = await asyncpg.connect(PG_ADMIN, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# ---------------------------------------------------------------- the run


@dataclass
class Acked:
    sender: int
    index: int
    txn: str
    result: SendResult
    attempts: int


@dataclass
class Run:
    group: str
    nodes: list[Node]
    total: int
    min_kills: int
    deadline: float
    acked: list[Acked] = field(default_factory=list)
    kills: int = 0
    restart_s: list[float] = field(default_factory=list)
    heard: list[dict[str, Any]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    killed: asyncio.Event = field(default_factory=asyncio.Event)

    def progress_allowed(self) -> bool:
        """Hold the senders back so that the kills are spread over the whole run."""
        # the last send waits for the min_kills-th kill
        return len(self.acked) < self.total * (self.kills + 1) / (self.min_kills + 1)


def retryable(error: QunliaoError) -> bool:
    return isinstance(error, QunliaoConnectionError) or error.code in (
        "unavailable",
        "rate_limited",
    )


async def held_back(run: Run) -> None:
    while not run.progress_allowed():
        run.killed.clear()
        try:
            await asyncio.wait_for(run.killed.wait(), max(run.deadline - time.monotonic(), 0.01))
        except TimeoutError:
            return


async def http_sender(run: Run, number: int, clients: list[Client], count: int) -> None:
    """clients: the same device on each node; one try per node in turn, same txn id."""
    for index in range(count):
        await held_back(run)
        txn = f"s{number}-{index}-{secrets.token_hex(3)}"
        attempts = 0
        while True:
            client = clients[(number + attempts) % len(clients)]
            attempts += 1
            try:
                result = await client.send_text(
                    run.group, f"{number}:{index}", client_txn_id=txn, retry=ONCE
                )
                break
            except QunliaoError as error:
                if not retryable(error) or time.monotonic() > run.deadline:
                    raise
                await asyncio.sleep(min(0.02 * attempts, 0.5))
        run.acked.append(Acked(number, index, txn, result, attempts))


async def ws_sender(run: Run, number: int, clients: list[Client], count: int) -> None:
    """One socket; when it breaks, a new socket to the next node, the same txn id again."""
    ws: WebSocketConnection | None = None
    node = number
    try:
        for index in range(count):
            await held_back(run)
            txn = f"s{number}-{index}-{secrets.token_hex(3)}"
            attempts = 0
            while True:
                attempts += 1
                try:
                    if ws is None:
                        ws = clients[node % len(clients)].websocket()
                        await ws.connect()
                    result = await ws.send_text(
                        run.group, f"{number}:{index}", txn, ack_timeout=5.0
                    )
                    break
                except QunliaoError as error:
                    if not retryable(error) or time.monotonic() > run.deadline:
                        raise
                    if ws is not None:
                        await ws.close()
                        ws = None
                    node += 1
                    await asyncio.sleep(min(0.02 * attempts, 0.5))
            run.acked.append(Acked(number, index, txn, result, attempts))
    finally:
        if ws is not None:
            await ws.close()


async def listener(run: Run, clients: list[Client], since: str) -> None:
    """Follows the group with resume tokens, moving to the other node whenever one dies."""
    token = since
    node = 0
    while True:
        ws = clients[node % len(clients)].websocket(since=token)
        try:
            await ws.connect()
            async for event in ws.events():
                token = ws.last_token or token
                if event.get("type") == "message" and event.get("conversation_id") == run.group:
                    run.heard.append(event)
        except QunliaoError as error:
            if not retryable(error):
                raise
        finally:
            await ws.close()
        node += 1
        await asyncio.sleep(0.05)


async def killer(run: Run, rng: random.Random) -> None:
    """kill -9 a random running node every 0.5-3 s and start it again at once. Mostly the other
    node is up meanwhile; one time in five the last running node goes too (both down)."""

    async def restart(node: Node) -> None:
        node.spawn()
        run.restart_s.append(await node.wait_healthy())

    restarting: set[asyncio.Task[None]] = set()
    while not run.done.is_set() and time.monotonic() < run.deadline:
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        running = [n for n in run.nodes if n.up.is_set()]
        if not running or run.done.is_set():
            continue
        if len(running) < len(run.nodes) and rng.random() > 0.2:
            continue
        node = rng.choice(running)
        node.kill()
        run.kills += 1
        run.killed.set()
        task = asyncio.create_task(restart(node))
        restarting.add(task)
        task.add_done_callback(restarting.discard)
    await asyncio.gather(*restarting)


async def progress(run: Run, started: float) -> None:
    while not run.done.is_set():
        await asyncio.sleep(30)
        print(
            f"  … {time.monotonic() - started:.0f} s: {len(run.acked)}/{run.total} acked, "
            f"{run.kills} kills",
            file=sys.stderr,
            flush=True,
        )


async def token_now(client: Client) -> str:
    token = None
    while True:
        page = await client.sync(token, limit=1000)
        token = page.next_token
        if not page.events:
            return token


def quiet_unretrieved(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A socket that breaks mid-send leaves an SDK future whose error nobody reads; the send
    itself failed and is retried, so that log line is noise here."""
    if isinstance(context.get("exception"), QunliaoConnectionError):
        return
    loop.default_exception_handler(context)


async def main_async(args: argparse.Namespace) -> int:
    asyncio.get_running_loop().set_exception_handler(quiet_unretrieved)
    rng = random.Random(args.seed)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="qunliao-crash-"))
    with private_redis(workdir) as bus_url:
        async with fresh_database() as database_url:
            migrating = await asyncio.create_subprocess_exec(
                *[PYTHON, "-m", "qunliao", "migrate", "--database-url", database_url],
                env=server_env(),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            if await asyncio.wait_for(migrating.wait(), 120) != 0:
                raise RuntimeError("qunliao migrate failed")
            nodes = [Node(f"node{i + 1}", database_url, bus_url, workdir) for i in range(2)]
            for node in nodes:
                node.spawn()
            for node in nodes:
                await node.wait_healthy()
            try:
                return await drive(args, rng, nodes, started, workdir)
            finally:
                for node in nodes:
                    node.stop()


async def drive(
    args: argparse.Namespace, rng: random.Random, nodes: list[Node], started: float, workdir: Path
) -> int:
    urls = [node.url for node in nodes]
    names = [f"crash{i}_{secrets.token_hex(3)}" for i in range(args.senders + 1)]
    async with Client(urls[0]) as registrar:
        ids = [await registrar.register(name, PASSWORD, name) for name in names]
    devices: list[list[Client]] = []
    for name in names:
        first = Client(urls[0], timeout=5.0)
        await first.login(name, PASSWORD, device_name="crash-loop")
        others = [Client(url, access_token=first.access_token, timeout=5.0) for url in urls[1:]]
        devices.append([first, *others])
    try:
        group = await devices[0][0].create_group(ids[1:], "crash loop")
        run = Run(group, nodes, args.messages, args.kills, deadline=started + args.deadline)
        listen_token = await token_now(devices[-1][0])
        listening = asyncio.create_task(listener(run, devices[-1], listen_token))
        share, extra = divmod(args.messages, args.senders)
        senders = []
        for number in range(args.senders):
            count = share + (1 if number < extra else 0)
            kind = http_sender if number % 2 == 0 else ws_sender
            senders.append(asyncio.create_task(kind(run, number, devices[number], count)))
        killing = asyncio.create_task(killer(run, rng))
        reporting = asyncio.create_task(progress(run, started))
        failed: BaseException | None = None
        try:
            remaining = max(run.deadline - time.monotonic(), 1)
            await asyncio.wait_for(asyncio.gather(*senders), remaining)
        except (TimeoutError, QunliaoError) as exc:
            failed = exc
            for task in senders:
                task.cancel()
        run.done.set()
        reporting.cancel()
        await asyncio.wait_for(killing, 90)
        for node in nodes:
            await node.wait_healthy()
        sending_s = time.monotonic() - started

        history = await devices[0][0].all_history(group)
        acked_ids = {a.result.message_id for a in run.acked}
        # the listener has until it holds every acked message (or 30 s) to catch up
        catch_up = time.monotonic() + 30
        while time.monotonic() < catch_up:
            if acked_ids <= {e["message_id"] for e in run.heard}:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening

        report = tally(run, history)
        wall = time.monotonic() - started
        retried = sum(1 for a in run.acked if a.attempts > 1)
        print(
            f"crash loop: {args.messages} messages, {args.senders} senders "
            f"({(args.senders + 1) // 2} HTTP, {args.senders // 2} WebSocket), 2 gateways on "
            f"PostgreSQL + Redis, seed {args.seed}"
        )
        for key in ("acked", "lost", "duplicated", "reordered", "unacked"):
            print(f"  {key:<11} {report[key]}")
        print(
            f"  listener    heard {report['heard']}, missing {report['heard_missing']}, "
            f"repeated {report['heard_repeated']}, out of order {report['heard_reordered']}"
        )
        print(
            f"  kills       {run.kills} (server starts: "
            f"{', '.join(f'{n.name} {n.starts}' for n in nodes)})"
        )
        print(f"  retries     {retried} sends needed more than one try")
        if run.restart_s:
            ordered = sorted(run.restart_s)
            print(
                f"  restart     kill -> healthy again: median {ordered[len(ordered) // 2]:.2f} s,"
                f" max {ordered[-1]:.2f} s"
            )
        print(f"  wall time   {wall:.1f} s ({sending_s:.1f} s sending)")
        ok = (
            failed is None
            and report["acked"] == args.messages
            and run.kills >= args.kills
            and all(report[k] == 0 for k in ("lost", "duplicated", "reordered", "unacked"))
            and report["heard_missing"] == report["heard_repeated"] == 0
        )
        if failed is not None:
            print(f"  ABORTED     {type(failed).__name__}: {failed} (logs in {workdir})")
        print("  result      " + ("OK" if ok else f"FAILED (logs in {workdir})"))
        return 0 if ok else 1
    finally:
        for clients in devices:
            for client in clients:
                await client.aclose()


def tally(run: Run, history: list[dict[str, Any]]) -> dict[str, int]:
    texts = Counter(str(m["body"]["text"]) for m in history)
    stored = {str(m["body"]["text"]): m for m in history}
    acked_texts = {f"{a.sender}:{a.index}" for a in run.acked}
    lost = sum(
        1
        for a in run.acked
        if stored.get(f"{a.sender}:{a.index}", {}).get("message_id") != a.result.message_id
    )
    # A sender waits for each ack before the next send, so its messages' seqs must rise.
    reordered = 0
    by_sender: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for a in run.acked:
        message = stored.get(f"{a.sender}:{a.index}")
        if message is not None:
            by_sender[a.sender].append((a.index, int(message["seq"])))
    for pairs in by_sender.values():
        seqs = [seq for _, seq in sorted(pairs)]
        reordered += sum(1 for x, y in itertools.pairwise(seqs) if y <= x)
    heard = Counter(e["message_id"] for e in run.heard)
    heard_seqs = [e["seq"] for e in run.heard]
    acked_ids = {a.result.message_id for a in run.acked}
    return {
        "acked": len(run.acked),
        "lost": lost,
        "duplicated": sum(1 for n in texts.values() if n > 1),
        "reordered": reordered,
        "unacked": sum(1 for t in texts if t not in acked_texts),
        "heard": len(run.heard),
        "heard_missing": len(acked_ids - set(heard)),
        "heard_repeated": sum(1 for n in heard.values() if n > 1),
        "heard_reordered": sum(1 for x, y in itertools.pairwise(heard_seqs) if y <= x),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--kills", type=int, default=70, help="at least this many kill -9s")
    parser.add_argument("--deadline", type=float, default=600.0, help="give up after seconds")
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = parser.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
