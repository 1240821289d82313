"""qunliao: start `qunliao serve` pinned to the server core, create users, and its drivers."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.harness.common import (
    PYTHON,
    ROOT,
    WORK,
    free_port,
    http_ok,
    log,
    pg_backend_pids,
    pg_drop,
    pg_fresh_database,
    pinned,
    stop,
)

PASSWORD = "benchmark-pass-1"


class Qunliao:
    name = "qunliao"
    recv_proto = "qunliao-ws"

    def __init__(self, backend: str, env: dict[str, str] | None = None) -> None:
        self.backend = backend
        self.env = env or {}
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = WORK / f"qunliao-{backend}-{os.getpid()}-{secrets.token_hex(2)}"
        self.db_url = ""
        self.users: list[dict[str, Any]] = []  # {"user_id", "token"}
        self.direct: list[str] = []  # direct conversations user i → the last user
        self.group = ""
        self.writer: dict[str, Any] = {}
        self.reader: dict[str, Any] = {}
        self.log_path = self.dir / "server.log"

    # --- lifecycle -----------------------------------------------------------------------------
    def create_database(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.backend == "sqlite":
            self.db_url = f"sqlite:///{self.dir}/qunliao.db"
        else:
            self.db_url = pg_fresh_database("qunliao_bench")

    def command(self, setup: bool = False) -> list[str]:
        if setup:
            return [str(PYTHON), "-m", "bench.harness.qunliao_setup", str(self.port)]
        return pinned(
            [
                str(PYTHON),
                "-m",
                "qunliao",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--database-url",
                self.db_url,
                "--log-level",
                "warning",
            ]
        )

    def environ(self) -> dict[str, str]:
        return dict(
            os.environ,
            QUNLIAO_RATE_LIMITS="off",  # every limit, registrations and logins too
            QUNLIAO_RATE_LIMIT_PER_S="0",
            QUNLIAO_RATE_LIMIT_BURST="1000000",
            QUNLIAO_LOG_LEVEL="warning",
            # Every benchmark connection comes from 127.0.0.1: lift the per-address cap (1,000).
            QUNLIAO_MAX_CONNECTIONS_PER_IP="100000",
            **self.env,
        )

    def start(self, timeout: float = 60, setup: bool = False) -> float:
        """Start the server; returns seconds from spawn to /healthz ok."""
        if not self.db_url:
            self.create_database()
        env = self.environ()
        env["QUNLIAO_DATABASE_URL"] = self.db_url
        began = time.perf_counter()
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                self.command(setup), env=env, stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT
            )
        url = f"http://127.0.0.1:{self.port}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if http_ok(url, 0.5):
                return time.perf_counter() - began
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"qunliao did not start: {tail}")

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None

    def drop(self) -> None:
        self.stop()
        if self.backend == "postgres" and self.db_url:
            pg_drop(self.db_url)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- setup ---------------------------------------------------------------------------------
    def setup(self, users: int, senders: int) -> None:
        """Create the accounts on a setup server with cheap hashing, then start the real one."""
        self.stop()
        try:
            self.start(setup=True)
        except RuntimeError as exc:
            log(f"setup server failed ({exc!s:.200}); creating accounts on qunliao serve")
            self.start()
        asyncio.run(self._setup(users, senders))
        self.stop()
        self.port = free_port()
        self.start()

    async def _setup(self, users: int, senders: int) -> None:
        began = time.perf_counter()
        tag = secrets.token_hex(2)
        sem = asyncio.Semaphore(8)
        async with httpx.AsyncClient(base_url=self.base, timeout=120) as http:

            async def one(i: int) -> dict[str, Any]:
                name = f"u{i}_{tag}"
                async with sem:
                    r = await http.post(
                        "/api/v1/accounts",
                        json={"username": name, "password": PASSWORD, "display_name": name},
                    )
                    r.raise_for_status()
                    r = await http.post(
                        "/api/v1/sessions",
                        json={"username": name, "password": PASSWORD, "device_name": "bench"},
                    )
                    r.raise_for_status()
                    body = r.json()
                return {"user_id": body["user_id"], "token": body["access_token"]}

            everyone = list(await asyncio.gather(*(one(i) for i in range(users + 2))))
            self.users, (writer, self.reader) = everyone[:users], everyone[users:]
            last = self.users[-1]["user_id"]

            async def direct(u: dict[str, Any], peer: str = last) -> str:
                r = await http.post(
                    "/api/v1/conversations",
                    json={"kind": "direct", "member_ids": [peer]},
                    headers={"Authorization": f"Bearer {u['token']}"},
                )
                r.raise_for_status()
                return str(r.json()["conversation_id"])

            self.direct = list(await asyncio.gather(*(direct(u) for u in self.users[:senders])))
            self.writer = {
                **writer,
                "conversation_id": await direct(writer, self.reader["user_id"]),
            }
            r = await http.post(
                "/api/v1/conversations",
                json={
                    "kind": "group",
                    "title": "fan-out 500",
                    "member_ids": [u["user_id"] for u in self.users[1:500]],
                },
                headers={"Authorization": f"Bearer {self.users[0]['token']}"},
            )
            r.raise_for_status()
            self.group = r.json()["conversation_id"]
        log(f"qunliao/{self.backend}: {users} users set up in {time.perf_counter() - began:.1f}s")

    # --- targets for the load generators ---------------------------------------------------------
    def send_targets(self, n: int, proto: str = "qunliao-ws") -> list[dict[str, Any]]:
        return [
            {"proto": proto, "token": self.users[i]["token"], "conversation_id": self.direct[i]}
            for i in range(n)
        ]

    def fanout_targets(self, members: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        sender = {
            "proto": "qunliao-ws",
            "token": self.users[0]["token"],
            "conversation_id": self.group,
            "stamp": True,
        }
        receivers = [{"token": u["token"]} for u in self.users[:members]]
        return sender, receivers

    def db_pids(self) -> list[int]:
        return pg_backend_pids(self.db_url) if self.backend == "postgres" else []

    def idle_targets(self) -> list[dict[str, Any]]:
        return [{"token": u["token"]} for u in self.users]

    # --- catch-up --------------------------------------------------------------------------------
    def catchup(self, messages: int, repeats: int) -> dict[str, Any]:
        """The last user misses `messages` messages, then catches up with /sync, `repeats` times."""
        from bench.harness.loadgen import run_load

        token = asyncio.run(self._sync_to_end())
        target = {
            "proto": "qunliao-ws",
            "token": self.writer["token"],
            "conversation_id": self.writer["conversation_id"],
        }
        sent, rate = 0, 25000.0  # a high first guess: better short of the count than far over
        for _ in range(100):
            if sent >= messages * 0.98:
                break
            outcome = run_load(
                [
                    {
                        "port": self.port,
                        "targets": [target],
                        "mode": "closed",
                        "window": 32,
                        "warmup": 0.0,
                        # short of what is left: the count is a target, not a floor to pass
                        "seconds": min(30.0, max(0.05, 0.9 * (messages - sent) / rate)),
                    }
                ],
                None,
            )
            done = sum(o["completed"] for o in outcome["send"])
            rate = max(50.0, done / outcome["seconds"])
            sent += done
        times, counts = asyncio.run(self._measure_catchup(token, repeats))
        return {"times": times, "events": counts, "missed": sent}

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.reader['token']}"}

    async def _sync_to_end(self) -> str:
        async with httpx.AsyncClient(base_url=self.base, timeout=120, headers=self._auth()) as http:
            token = None
            for _ in range(10_000):
                params = {"limit": 1000, **({"since": token} if token else {})}
                body = orjson.loads((await http.get("/api/v1/sync", params=params)).content)
                token = body["next_token"]
                if not body["events"]:
                    break
            assert token is not None
            return token

    async def _measure_catchup(self, token: str, repeats: int) -> tuple[list[float], list[int]]:
        times, counts = [], []
        async with httpx.AsyncClient(base_url=self.base, timeout=120, headers=self._auth()) as http:
            for _ in range(repeats):
                began = time.perf_counter()
                since, got = token, 0
                for _ in range(1000):
                    r = await http.get("/api/v1/sync", params={"since": since, "limit": 1000})
                    body = orjson.loads(r.content)
                    since = body["next_token"]
                    if not body["events"]:
                        break
                    got += len(body["events"])
                times.append(time.perf_counter() - began)
                counts.append(got)
        return times, counts


def cold_start(backend: str, repeats: int) -> dict[str, Any]:
    """spawn → /healthz ok, on a database that already exists (after one first start)."""
    server = Qunliao(backend)
    server.create_database()
    try:
        first = server.start()
        server.stop()
        times = []
        for _ in range(repeats):
            server.port = free_port()
            times.append(server.start())
            server.stop()
    finally:
        server.drop()
    return {"first_start_s": first, "times": times}


def server_log_tail(server: Qunliao) -> str:
    try:
        return Path(server.log_path).read_text(errors="replace")[-1500:]
    except OSError:
        return ""
