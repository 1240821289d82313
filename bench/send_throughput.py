"""1:1 send throughput and ack latency over WebSocket, server pinned to one core.

    .venv/bin/python -m bench.send_throughput [--seconds 10] [--backend sqlite|postgres|both]

The server runs under `taskset -c 0`; load generators run in separate processes on the other
core(s). Each connection keeps a window of sends in flight (closed loop) and measures each ack
from the moment its send was written. Warm-up is excluded. Prints msgs/s and p50/p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
PG_ADMIN = os.environ.get(
    "QUNLIAO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(database_url: str, port: int, cores: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        QUNLIAO_RATE_LIMITS="off",
        QUNLIAO_RATE_LIMIT_PER_S="0",
        QUNLIAO_LOG_LEVEL="warning",
    )
    command = [
        str(PYTHON),
        "-m",
        "qunliao",
        "serve",
        "--port",
        str(port),
        "--database-url",
        database_url,
    ]
    if shutil.which("taskset"):
        command = ["taskset", "-c", cores, *command]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(
        "server did not start: " + (proc.stderr.read() if proc.stderr else b"").decode()
    )


async def setup_pairs(base: str, pairs: int) -> list[tuple[str, str]]:
    """(access_token, conversation_id) for each sender."""
    out = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for i in range(pairs):
            tokens = []
            for role in ("s", "r"):
                name = f"b{role}{i}_{secrets.token_hex(3)}"
                r = await http.post(
                    "/api/v1/accounts",
                    json={"username": name, "password": "benchmark1", "display_name": name},
                )
                r.raise_for_status()
                r = await http.post(
                    "/api/v1/sessions",
                    json={"username": name, "password": "benchmark1", "device_name": "bench"},
                )
                tokens.append((r.json()["access_token"], r.json()["user_id"]))
            r = await http.post(
                "/api/v1/conversations",
                json={"kind": "direct", "member_ids": [tokens[1][1]]},
                headers={"Authorization": f"Bearer {tokens[0][0]}"},
            )
            out.append((tokens[0][0], r.json()["conversation_id"]))
    return out


async def drive(
    url: str, senders: list[tuple[str, str]], seconds: float, warmup: float, window: int
) -> dict[str, Any]:
    latencies: list[float] = []
    counted = 0
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def one(token: str, conversation: str) -> None:
        nonlocal counted, errors
        async with websockets.connect(f"{url}?access_token={token}", max_queue=None) as ws:
            pending: dict[str, float] = {}  # client_txn_id → when it was sent
            prefix = secrets.token_hex(4)
            counter = 0

            async def send() -> None:
                nonlocal counter
                counter += 1
                txn = f"{prefix}-{counter}"
                pending[txn] = time.perf_counter()
                await ws.send(
                    orjson.dumps(
                        {
                            "type": "send",
                            "conversation_id": conversation,
                            "client_txn_id": txn,
                            "msg_type": "text",
                            "body": {"text": "你好, benchmark"},
                        }
                    ).decode()
                )

            for _ in range(window):
                await send()
            async for raw in ws:
                frame = orjson.loads(raw)
                kind = frame.get("type")
                if kind not in ("ack", "error"):
                    continue
                now = time.perf_counter()
                began = pending.pop(frame.get("client_txn_id") or next(iter(pending)), now)
                if kind == "error":
                    errors += 1
                elif measure_from <= began and now <= stop_at:
                    latencies.append(now - began)
                    counted += 1
                if now >= stop_at:
                    return
                await send()

    await asyncio.gather(*(one(t, c) for t, c in senders))
    return {"count": counted, "latencies": latencies, "errors": errors, "seconds": seconds}


def _worker(
    url: str,
    senders: list[tuple[str, str]],
    seconds: float,
    warmup: float,
    window: int,
    results: Any,
) -> None:
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1} if os.cpu_count() and os.cpu_count() > 1 else {0})
    before = resource.getrusage(resource.RUSAGE_SELF)
    outcome = asyncio.run(drive(url, senders, seconds, warmup, window))
    after = resource.getrusage(resource.RUSAGE_SELF)
    outcome["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    results.put(outcome)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(
    database_url: str, label: str, seconds: float, clients: int, connections: int, window: int
) -> dict[str, Any]:
    port = free_port()
    server = start_server(database_url, port, "0")
    try:
        senders = asyncio.run(setup_pairs(f"http://127.0.0.1:{port}", clients * connections))
        cpu_before = _proc_cpu(server.pid)
        results: Any = mp.Queue()
        procs = [
            mp.Process(
                target=_worker,
                args=(
                    f"ws://127.0.0.1:{port}/api/v1/ws",
                    senders[i * connections : (i + 1) * connections],
                    seconds,
                    2.0,
                    window,
                    results,
                ),
            )
            for i in range(clients)
        ]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=seconds + 60) for _ in procs]
        for p in procs:
            p.join()
        server_cpu = _proc_cpu(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait(10)
    latencies = [x for o in outcomes for x in o["latencies"]]
    total = sum(o["count"] for o in outcomes)
    rate = total / seconds
    row = {
        "backend": label,
        "msgs_per_s": rate,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": sum(o["errors"] for o in outcomes),
        "client_cpu_s": sum(o["cpu"] for o in outcomes),
        "server_cpu_ms_per_msg": server_cpu * 1000 / max(1, total) if server_cpu else float("nan"),
    }
    print(
        f"{label:9s} {rate:10.0f} msg/s  p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms"
        f"  errors {row['errors']}  client cpu {row['client_cpu_s']:.1f}s/{seconds:.0f}s"
        f"  server cpu/msg {row['server_cpu_ms_per_msg']:.3f} ms (incl. warm-up)",
        flush=True,
    )
    return row


def _proc_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (the server under taskset)."""
    total = 0.0
    try:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        pids = [pid, *map(int, children.split())]
        tick = os.sysconf("SC_CLK_TCK")
        for p in pids:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    except (OSError, ValueError):
        return 0.0
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--clients", type=int, default=1, help="load generator processes")
    parser.add_argument("--connections", type=int, default=16, help="sockets per process")
    parser.add_argument("--window", type=int, default=16, help="sends in flight per socket")
    args = parser.parse_args(argv)
    print(
        f"1:1 WebSocket sends, ack after commit; server on core 0; {args.clients} client "
        f"process(es) x {args.connections} sockets x {args.window} in flight; "
        f"{args.seconds:.0f}s after 2s warm-up",
        flush=True,
    )
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            run(
                f"sqlite:///{tmp}/bench.db",
                "sqlite",
                args.seconds,
                args.clients,
                args.connections,
                args.window,
            )
    if args.backend in ("postgres", "both"):
        name = f"qunliao_bench_{secrets.token_hex(4)}"
        _pg(f'CREATE DATABASE "{name}"')
        try:
            base = PG_ADMIN.rpartition("/")[0]
            run(
                f"{base}/{name}",
                "postgres",
                args.seconds,
                args.clients,
                args.connections,
                args.window,
            )
        finally:
            _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg(sql: str) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


if __name__ == "__main__":
    sys.exit(main())
