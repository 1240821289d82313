"""A normal user's send latency while one client abuses the server (issue 14, items 1–4).

One `qunliao serve` with its default limits (rate limits on), on half the CPUs; the clients
run on the other half, the attacker at the lowest priority (it would be on another machine).
A "normal" user sends a message
over HTTP every 50 ms and times each answer; meanwhile an attacker process runs one abuse at a
time. Each abuse is the one the hardening review found:

- `nul-sends`: sends whose client_txn_id holds U+0000, as fast as the send limit allows
  (item 1: on PostgreSQL they used to poison whole commit batches);
- `read-frames`: one WebSocket sending `read` frames as fast as it can (item 2);
- `big-bodies`: 64 MB bodies to `POST /api/v1/accounts`, four at a time (item 3);
- `slow-heads`: 2,000 connections that each send a header line every few seconds (item 3);
- `login-guessing`: wrong passwords for the normal user, four at a time; the normal user also
  logs in from another address every second, and the share that succeeds is reported (item 4);
- `registrations`: new accounts as fast as four clients can ask (item 4).

Prints a table: p50/p99 of the normal user's sends without and with each abuse, the ratio of the
p99s (the goal: ≤ 2×) and what the attacker got back.

    .venv/bin/python -m bench.abuse [--database sqlite|postgres] [--seconds 10] [--only NAME,…]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

PYTHON = Path(sys.executable)
PASSWORD = "correct horse battery"
ABUSES = (
    "nul-sends",
    "read-frames",
    "big-bodies",
    "slow-heads",
    "login-guessing",
    "registrations",
)
ATTACKER = "127.0.1.9"  # the attacker's address; the normal user logs in from 127.0.0.2
PG_URL = os.environ.get(
    "QUNLIAO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def split_cpus() -> tuple[set[int], set[int]]:
    """The server's CPUs and the clients' (half each; all for both on one CPU)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


SERVER_CPUS, CLIENT_CPUS = split_cpus()


def pin(cpus: set[int]) -> None:
    os.sched_setaffinity(0, cpus)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(database_url: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUNLIAO_")}
    env.update(QUNLIAO_LOG_LEVEL="warning", QUNLIAO_CONFIG=str(workdir / "none.toml"))
    command = [str(PYTHON), "-m", "qunliao", "serve", "--port", str(port)]
    command += ["--database-url", database_url]
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
        preexec_fn=lambda: pin(SERVER_CPUS),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start: see " + str(workdir / "server.log"))


def fresh_postgres() -> str:
    import asyncpg

    name = "qunliao_abuse_" + secrets.token_hex(4)

    async def create() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return PG_URL.rsplit("/", 1)[0] + "/" + name


# ---------------------------------------------------------------- setup


async def account(http: httpx.AsyncClient, prefix: str) -> dict[str, str]:
    name = f"{prefix}_{secrets.token_hex(3)}"
    r = await http.post(
        "/api/v1/accounts",
        json={"username": name, "password": PASSWORD, "display_name": f"{prefix} 用户"},
    )
    r.raise_for_status()
    r = await http.post(
        "/api/v1/sessions",
        json={"username": name, "password": PASSWORD, "device_name": "bench"},
    )
    r.raise_for_status()
    return {"username": name, "token": r.json()["access_token"], "user_id": r.json()["user_id"]}


async def setup(base: str) -> dict[str, Any]:
    """The normal user and a friend, the attacker and a friend, a conversation for each pair."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        people = {p: await account(http, p) for p in ("alice", "bob", "mallory", "trudy")}
        for sender, receiver in (("alice", "bob"), ("mallory", "trudy")):
            r = await http.post(
                "/api/v1/conversations",
                json={"kind": "direct", "member_ids": [people[receiver]["user_id"]]},
                headers={"Authorization": f"Bearer {people[sender]['token']}"},
            )
            r.raise_for_status()
            people[sender]["conversation_id"] = r.json()["conversation_id"]
    return people


# ---------------------------------------------------------------- the normal user


async def normal_user(base: str, alice: dict[str, str], seconds: float) -> dict[str, Any]:
    """Sends every 50 ms (and logs in from 127.0.0.2 every second); latencies in ms."""
    latencies: list[float] = []
    failures: collections.Counter[str] = collections.Counter()
    logins = {"ok": 0, "tries": 0}
    path = f"/api/v1/conversations/{alice['conversation_id']}/messages"
    headers = {"Authorization": f"Bearer {alice['token']}"}
    end = time.monotonic() + seconds

    async def sends() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            n = 0
            while time.monotonic() < end:
                n += 1
                body = {
                    "client_txn_id": secrets.token_hex(8),
                    "msg_type": "text",
                    "body": {"text": f"你好 hello {n}"},
                }
                started = time.perf_counter()
                try:
                    r = await http.post(path, json=body, headers=headers)
                    if r.status_code >= 300:
                        failures[str(r.status_code)] += 1
                except httpx.HTTPError as exc:
                    failures[type(exc).__name__] += 1
                latencies.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.05)

    async def logins_elsewhere() -> None:
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(base_url=base, timeout=30, transport=transport) as http:
            while time.monotonic() < end:
                logins["tries"] += 1
                r = await http.post(
                    "/api/v1/sessions",
                    json={"username": alice["username"], "password": PASSWORD},
                )
                if r.status_code == 201 or r.status_code == 200:
                    logins["ok"] += 1
                    token = r.json()["access_token"]
                    await http.delete(
                        "/api/v1/sessions/current", headers={"Authorization": f"Bearer {token}"}
                    )
                await asyncio.sleep(1.0)

    await asyncio.gather(sends(), logins_elsewhere())
    return {"latencies": latencies, "failures": dict(failures), "logins": logins}


# ---------------------------------------------------------------- the abuses (attacker process)


async def nul_sends(
    base: str, people: dict[str, Any], end: float, seen: collections.Counter[str]
) -> None:
    mallory = people["mallory"]
    path = f"/api/v1/conversations/{mallory['conversation_id']}/messages"
    headers = {"Authorization": f"Bearer {mallory['token']}"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        while time.monotonic() < end:
            body = {"client_txn_id": "x\u0000" + secrets.token_hex(4), "msg_type": "text",
                    "body": {"text": "poison"}}  # fmt: skip
            r = await http.post(path, json=body, headers=headers)
            seen[str(r.status_code)] += 1
            if r.status_code == 429:
                await asyncio.sleep(float(r.headers.get("retry-after", "0.05")))


async def read_frames(
    base: str, people: dict[str, Any], end: float, seen: collections.Counter[str]
) -> None:
    mallory = people["mallory"]
    url = base.replace("http://", "ws://") + "/api/v1/ws"
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {mallory['token']}"}, max_size=None
    ) as ws:
        conv = mallory["conversation_id"]

        async def drain() -> None:
            async for frame in ws:
                kind = json.loads(frame).get("type", "?")
                seen[f"frame:{kind}"] += 1

        reader = asyncio.create_task(drain())
        seq = 0
        while time.monotonic() < end:
            for _ in range(50):
                seq += 1
                await ws.send(json.dumps({"type": "read", "conversation_id": conv, "seq": seq % 3}))
                seen["sent"] += 1
            await asyncio.sleep(0)
        reader.cancel()


async def big_bodies(
    base: str, _people: dict[str, Any], end: float, seen: collections.Counter[str]
) -> None:
    chunk = b"a" * (1 << 20)

    async def body() -> Any:
        for _ in range(64):
            yield chunk

    async def one() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            while time.monotonic() < end:
                try:
                    r = await http.post(
                        "/api/v1/accounts", content=body(),
                        headers={"content-type": "application/json"},
                    )  # fmt: skip
                    seen[str(r.status_code)] += 1
                except httpx.HTTPError as exc:
                    seen[type(exc).__name__] += 1

    await asyncio.gather(*(one() for _ in range(4)))


async def slow_heads(
    base: str, _people: dict[str, Any], end: float, seen: collections.Counter[str]
) -> None:
    port = int(base.rsplit(":", 1)[1])
    writers: list[asyncio.StreamWriter] = []
    for i in range(2000):
        try:
            _reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(f"127.0.1.{1 + i % 4}", 0)
            )
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: q\r\n")
            writers.append(writer)
            seen["opened"] += 1
        except OSError:
            seen["refused"] += 1
    while time.monotonic() < end:
        for writer in writers:
            if not writer.is_closing():
                writer.write(b"X-Slow: 1\r\n")
        await asyncio.sleep(3)
    seen["still open"] = sum(1 for w in writers if not w.is_closing())
    for writer in writers:
        writer.close()


async def login_guessing(
    base: str, people: dict[str, Any], end: float, seen: collections.Counter[str]
) -> None:
    alice = people["alice"]

    async def one() -> None:
        transport = httpx.AsyncHTTPTransport(local_address=ATTACKER)
        async with httpx.AsyncClient(base_url=base, timeout=30, transport=transport) as http:
            while time.monotonic() < end:
                r = await http.post(
                    "/api/v1/sessions",
                    json={"username": alice["username"], "password": secrets.token_hex(6)},
                )
                seen[str(r.status_code)] += 1

    await asyncio.gather(*(one() for _ in range(4)))


async def registrations(
    base: str, _people: dict[str, Any], end: float, seen: collections.Counter[str]
) -> None:
    async def one() -> None:
        transport = httpx.AsyncHTTPTransport(local_address=ATTACKER)
        async with httpx.AsyncClient(base_url=base, timeout=30, transport=transport) as http:
            while time.monotonic() < end:
                name = "spam_" + secrets.token_hex(5)
                r = await http.post(
                    "/api/v1/accounts",
                    json={"username": name, "password": PASSWORD, "display_name": "垃圾 spam"},
                )
                seen[str(r.status_code)] += 1

    await asyncio.gather(*(one() for _ in range(4)))


ATTACKS = {
    "nul-sends": nul_sends,
    "read-frames": read_frames,
    "big-bodies": big_bodies,
    "slow-heads": slow_heads,
    "login-guessing": login_guessing,
    "registrations": registrations,
}


def attacker(name: str, base: str, people: dict[str, Any], seconds: float, out: Any) -> None:
    seen: collections.Counter[str] = collections.Counter()
    # The attacker would run elsewhere: here it shares the clients' core at the lowest priority,
    # so its own CPU does not count against the server or the normal user.
    os.nice(19)

    async def run() -> None:
        try:
            await ATTACKS[name](base, people, time.monotonic() + seconds, seen)
        except Exception as exc:  # the attacker's own failure is reported, not raised
            seen[f"attacker stopped: {type(exc).__name__}"] += 1

    asyncio.run(run())
    out.put(dict(seen))


# ---------------------------------------------------------------- the run


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def phase(base: str, people: dict[str, Any], seconds: float, abuse: str | None) -> dict[str, Any]:
    queue: Any = multiprocessing.Queue()
    proc = None
    if abuse is not None:
        proc = multiprocessing.Process(
            target=attacker, args=(abuse, base, people, seconds + 2, queue)
        )
        proc.start()
        time.sleep(2)  # let the abuse reach its full rate
    result = asyncio.run(normal_user(base, people["alice"], seconds))
    if proc is not None:
        result["attacker"] = queue.get(timeout=120)
        proc.join(timeout=30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only", default=",".join(ABUSES))
    args = parser.parse_args()
    abuses = [a for a in args.only.split(",") if a]
    unknown = set(abuses) - set(ABUSES)
    if unknown:
        parser.error(f"unknown abuses: {sorted(unknown)}")
    pin(CLIENT_CPUS)  # the attacker processes inherit it
    with tempfile.TemporaryDirectory(prefix="qunliao-abuse-") as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'q.db'}" if args.database == "sqlite" else fresh_postgres()
        port = free_port()
        proc = start_server(url, port, workdir)
        base = f"http://127.0.0.1:{port}"
        try:
            people = asyncio.run(setup(base))
            baseline = phase(base, people, args.seconds, None)
            rows = [("none", baseline)]
            for abuse in abuses:
                rows.append((abuse, phase(base, people, args.seconds, abuse)))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    base_p99 = percentile(baseline["latencies"], 0.99)
    print(f"# qunliao under abuse ({args.database}, {args.seconds:.0f} s each, default limits)")
    print()
    print("| abuse | sends | p50 ms | p99 ms | p99 / no abuse | normal user's failures | "
          "logins from elsewhere | what the attacker got |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        lat = r["latencies"]
        p99 = percentile(lat, 0.99)
        got = ", ".join(f"{k}: {v}" for k, v in sorted(r.get("attacker", {}).items())) or "—"
        logins = f"{r['logins']['ok']}/{r['logins']['tries']}"
        print(
            f"| {name} | {len(lat)} | {percentile(lat, 0.5):.1f} | {p99:.1f} | "
            f"{p99 / base_p99:.2f}× | {r['failures'] or '—'} | {logins} | {got} |"
        )


if __name__ == "__main__":
    main()
