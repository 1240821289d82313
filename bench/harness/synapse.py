"""Synapse (the Matrix reference server): install from PyPI into its own venv, configure it with
registration open and every rate limit lifted, and drive it through the client-server API."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.harness import workloads as w
from bench.harness.common import (
    WORK,
    free_port,
    http_ok,
    log,
    pg_backend_pids,
    pg_drop,
    pg_fresh_database,
    pinned,
    save_result,
    stop,
)

VENV = WORK / "synapse-venv"
SY_PYTHON = VENV / "bin" / "python"
PASSWORD = "benchmark-pass-1"
NO_LIMIT = {"per_second": 1_000_000, "burst_count": 1_000_000}
INITIAL_FILTER = {
    "room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}},
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}
LIVE_FILTER = {
    "room": {
        "state": {"lazy_load_members": True},
        "timeline": {"limit": 1000},
        "ephemeral": {"not_types": ["*"]},
    },
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}


def q(filter_: dict[str, Any]) -> str:
    return urllib.parse.quote(json.dumps(filter_, separators=(",", ":")))


def install() -> str:
    """matrix-synapse from PyPI into its own venv (once); returns its version."""
    if not (VENV / "bin" / "synapse_homeserver").exists():
        log("installing matrix-synapse into " + str(VENV))
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(SY_PYTHON), "-m", "pip", "install", "-q", "matrix-synapse[postgres]"],
            check=True,
        )
    out = subprocess.run(
        [str(SY_PYTHON), "-c", "import synapse; print(synapse.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


CONFIGURE = r"""
import sys, yaml
path, overrides = sys.argv[1], sys.argv[2]
with open(path) as f:
    cfg = yaml.safe_load(f)
with open(overrides) as f:
    import json
    cfg.update(json.load(f))
with open(path, "w") as f:
    yaml.safe_dump(cfg, f)
"""


class Synapse:
    name = "synapse"
    recv_proto = "matrix"

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.port = free_port()
        self.dir = WORK / f"synapse-{backend}-{os.getpid()}-{secrets.token_hex(2)}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.db_url = ""
        self.users: list[dict[str, Any]] = []
        self.rooms: list[str] = []
        self.group = ""
        self.group_since: list[str] = []

    @property
    def config(self) -> Path:
        return self.dir / "homeserver.yaml"

    def configure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                str(SY_PYTHON),
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                "localhost",
                "--config-path",
                str(self.config),
                "--data-directory",
                str(self.dir),
                "--generate-config",
                "--report-stats=no",
            ],
            check=True,
            capture_output=True,
            cwd=self.dir,
        )
        if self.backend == "sqlite":
            database = {"name": "sqlite3", "args": {"database": str(self.dir / "homeserver.db")}}
        else:
            self.db_url = pg_fresh_database("synapse_bench", c_locale=True)
            database = {
                "name": "psycopg2",
                "args": {
                    "user": "postgres",
                    "host": "127.0.0.1",
                    "port": 5432,
                    "database": self.db_url.rpartition("/")[2],
                    "cp_min": 5,
                    "cp_max": 10,
                },
            }
        log_config = self.dir / "log.yaml"
        log_config.write_text(
            "version: 1\nformatters:\n  f:\n    format: '%(asctime)s %(levelname)s %(name)s "
            "%(message)s'\nhandlers:\n  file:\n    class: logging.FileHandler\n    filename: "
            f"{self.dir / 'homeserver.log'}\n    formatter: f\nroot:\n  level: WARNING\n  "
            "handlers: [file]\ndisable_existing_loggers: false\n"
        )
        overrides = {
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": database,
            "log_config": str(log_config),
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "bcrypt_rounds": 4,  # setup speed only: the workloads use access tokens
            "report_stats": False,
            "suppress_key_server_warning": True,
            "trusted_key_servers": [],
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "rc_message": NO_LIMIT,
            "rc_registration": NO_LIMIT,
            "rc_registration_token_validity": NO_LIMIT,
            "rc_login": {"address": NO_LIMIT, "account": NO_LIMIT, "failed_attempts": NO_LIMIT},
            "rc_admin_redaction": NO_LIMIT,
            "rc_joins": {"local": NO_LIMIT, "remote": NO_LIMIT},
            "rc_joins_per_room": NO_LIMIT,
            "rc_3pid_validation": NO_LIMIT,
            "rc_invites": {"per_room": NO_LIMIT, "per_user": NO_LIMIT, "per_issuer": NO_LIMIT},
            "rc_third_party_invite": NO_LIMIT,
            "rc_room_creation": NO_LIMIT,
            "rc_presence": {"per_user": NO_LIMIT},
            "rc_delayed_event_mgmt": NO_LIMIT,
            "rc_reports": NO_LIMIT,
            "rc_media_create": NO_LIMIT,
            "rc_key_requests": NO_LIMIT,
            "rc_federation": {
                "window_size": 1000,
                "sleep_limit": 1_000_000,
                "sleep_delay": 0,
                "reject_limit": 1_000_000,
                "concurrent": 1_000_000,
            },
            "limit_remote_rooms": {"enabled": False},
            "max_upload_size": "50M",
        }
        ov = self.dir / "overrides.json"
        ov.write_text(json.dumps(overrides))
        subprocess.run([str(SY_PYTHON), "-c", CONFIGURE, str(self.config), str(ov)], check=True)

    def start(self, timeout: float = 120) -> float:
        if not self.config.exists():
            self.configure()
        began = time.perf_counter()
        with open(self.dir / "stdout.log", "ab") as logf:
            self.proc = subprocess.Popen(
                pinned([str(SY_PYTHON), "-m", "synapse.app.homeserver", "-c", str(self.config)]),
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if http_ok(f"http://127.0.0.1:{self.port}/health", 0.5):
                return time.perf_counter() - began
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        tail = (self.dir / "stdout.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError("synapse did not start: " + tail)

    def stop(self) -> None:
        stop(self.proc, 20)
        self.proc = None

    def drop(self) -> None:
        self.stop()
        if self.db_url:
            pg_drop(self.db_url)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def db_pids(self) -> list[int]:
        return pg_backend_pids(self.db_url) if self.db_url else []

    # --- setup ---------------------------------------------------------------------------------
    def setup(self, users: int, senders: int, members: int) -> None:
        asyncio.run(self._setup(users, senders, members))

    async def _setup(self, users: int, senders: int, members: int) -> None:
        began = time.perf_counter()
        tag = secrets.token_hex(2)
        sem = asyncio.Semaphore(8)
        async with httpx.AsyncClient(base_url=self.base, timeout=300) as http:

            async def register(i: int) -> dict[str, Any]:
                async with sem:
                    r = await http.post(
                        "/_matrix/client/v3/register",
                        json={
                            "username": f"u{i}_{tag}",
                            "password": PASSWORD,
                            "auth": {"type": "m.login.dummy"},
                            "inhibit_login": False,
                        },
                    )
                    r.raise_for_status()
                    body = r.json()
                return {"user_id": body["user_id"], "token": body["access_token"]}

            everyone = list(await asyncio.gather(*(register(i) for i in range(users + 2))))
            self.users, (self.writer, self.reader) = everyone[:users], everyone[users:]
            last = self.users[-1]["user_id"]

            def auth(u: dict[str, Any]) -> dict[str, str]:
                return {"Authorization": f"Bearer {u['token']}"}

            async def dm(u: dict[str, Any], peer: str = last) -> str:
                async with sem:
                    r = await http.post(
                        "/_matrix/client/v3/createRoom",
                        json={"preset": "private_chat", "is_direct": True, "invite": [peer]},
                        headers=auth(u),
                    )
                    r.raise_for_status()
                    return str(r.json()["room_id"])

            self.rooms = list(await asyncio.gather(*(dm(u) for u in self.users[:senders])))
            self.writer["room_id"] = await dm(self.writer, self.reader["user_id"])
            r = await http.post(
                f"/_matrix/client/v3/join/{self.writer['room_id']}",
                json={},
                headers=auth(self.reader),
            )
            r.raise_for_status()
            r = await http.post(
                "/_matrix/client/v3/createRoom",
                json={"preset": "public_chat", "name": "fan-out"},
                headers=auth(self.users[0]),
            )
            r.raise_for_status()
            self.group = r.json()["room_id"]
            log(
                f"synapse/{self.backend}: {users} users, rooms in "
                f"{time.perf_counter() - began:.0f}s"
            )

            async def join(u: dict[str, Any]) -> None:
                async with sem:
                    r = await http.post(
                        f"/_matrix/client/v3/join/{self.group}", json={}, headers=auth(u)
                    )
                    r.raise_for_status()

            await asyncio.gather(*(join(u) for u in self.users[1:members]))

            async def since(u: dict[str, Any]) -> str:
                async with sem:
                    r = await http.get(
                        f"/_matrix/client/v3/sync?filter={q(INITIAL_FILTER)}", headers=auth(u)
                    )
                    r.raise_for_status()
                    return str(r.json()["next_batch"])

            self.group_since = list(await asyncio.gather(*(since(u) for u in self.users[:members])))
        log(f"synapse/{self.backend}: set up in {time.perf_counter() - began:.0f}s")

    # --- targets -------------------------------------------------------------------------------
    def send_targets(self, n: int, proto: str = "matrix") -> list[dict[str, Any]]:
        n = min(n, len(self.rooms))
        return [
            {"proto": "matrix", "token": self.users[i]["token"], "room_id": self.rooms[i]}
            for i in range(n)
        ]

    def fanout_targets(self, members: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        sender = {
            "proto": "matrix",
            "token": self.users[0]["token"],
            "room_id": self.group,
            "stamp": True,
        }
        receivers = [
            {"proto": "matrix", "token": u["token"], "since": s, "filter": q(LIVE_FILTER)}
            for u, s in zip(self.users[:members], self.group_since, strict=False)
        ]
        return sender, receivers

    def idle_targets(self) -> list[dict[str, Any]]:
        """Fresh `since` tokens, so that every long-poll really waits (nothing new to send)."""
        fresh = asyncio.run(self._fresh_since())
        return [
            {"proto": "matrix", "token": u["token"], "since": s, "filter": q(LIVE_FILTER)}
            for u, s in zip(self.users, fresh, strict=False)
        ]

    async def _fresh_since(self) -> list[str]:
        sem = asyncio.Semaphore(8)
        async with httpx.AsyncClient(base_url=self.base, timeout=300) as http:

            async def one(u: dict[str, Any], since: str) -> str:
                async with sem:
                    r = await http.get(
                        f"/_matrix/client/v3/sync?since={since}&timeout=0&filter={q(LIVE_FILTER)}",
                        headers={"Authorization": f"Bearer {u['token']}"},
                    )
                    r.raise_for_status()
                    return str(r.json()["next_batch"])

            pairs = zip(self.users, self.group_since, strict=False)
            return list(await asyncio.gather(*(one(u, s) for u, s in pairs)))

    # --- catch-up: an incremental (gappy) /sync, then /messages back to the last seen event ----
    def catchup(self, messages: int, repeats: int) -> dict[str, Any]:
        from bench.harness.loadgen import run_load

        token, marker = asyncio.run(self._sync_to_end())
        target = {
            "proto": "matrix",
            "token": self.writer["token"],
            "room_id": self.writer["room_id"],
        }
        targets = [target] * 8
        sent, rate = 0, 50.0
        for _ in range(200):
            if sent >= messages:
                break
            specs = [
                {
                    "port": self.port,
                    "targets": targets,
                    "mode": "closed",
                    "window": 1,
                    "warmup": 0.0,
                    "seconds": min(30.0, max(1.0, (messages - sent) / rate)),
                }
            ]
            outcome = run_load(specs, None)
            done = sum(o["completed"] for o in outcome["send"])
            rate = max(5.0, done / outcome["seconds"])
            sent += done
        times, counts = asyncio.run(self._measure(token, marker, repeats))
        return {"times": times, "events": counts, "missed": sent}

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.reader['token']}"}

    async def _sync_to_end(self) -> tuple[str, str]:
        room = self.writer["room_id"]
        async with httpx.AsyncClient(base_url=self.base, timeout=300, headers=self._auth()) as http:
            r = await http.get(f"/_matrix/client/v3/sync?filter={q(INITIAL_FILTER)}")
            r.raise_for_status()
            body = r.json()
            events = body["rooms"]["join"][room]["timeline"]["events"]
            return str(body["next_batch"]), str(events[-1]["event_id"])

    async def _measure(
        self, token: str, marker: str, repeats: int
    ) -> tuple[list[float], list[int]]:
        room = self.writer["room_id"]
        gappy = {**INITIAL_FILTER, "room": {**INITIAL_FILTER["room"], "timeline": {"limit": 10}}}
        times, counts = [], []
        async with httpx.AsyncClient(base_url=self.base, timeout=300, headers=self._auth()) as http:
            for _ in range(repeats):
                began = time.perf_counter()
                r = await http.get(f"/_matrix/client/v3/sync?since={token}&filter={q(gappy)}")
                timeline = orjson.loads(r.content)["rooms"]["join"][room]["timeline"]
                got = len(timeline["events"])
                seen = any(e["event_id"] == marker for e in timeline["events"])
                frm = timeline.get("prev_batch")
                for _ in range(1000):
                    if seen or not timeline.get("limited") or not frm:
                        break
                    r = await http.get(
                        f"/_matrix/client/v3/rooms/{room}/messages",
                        params={"dir": "b", "from": frm, "limit": 1000},
                    )
                    body = orjson.loads(r.content)
                    chunk = body.get("chunk", [])
                    for e in chunk:
                        if e["event_id"] == marker:
                            seen = True
                            break
                        got += 1
                    frm = body.get("end")
                    if not chunk:
                        break
                times.append(time.perf_counter() - began)
                counts.append(got)
        return times, counts


def cold_start(backend: str, repeats: int) -> dict[str, Any]:
    server = Synapse(backend)
    try:
        first = server.start()
        server.stop()
        times = []
        for _ in range(repeats):
            times.append(server.start())
            server.stop()
    finally:
        server.drop()
    return {"first_start_s": first, "times": times}


def run(backends: list[str], todo: set[str], cfg: type[w.Config]) -> None:
    version = install()
    save_result("synapse", "version", {"version": version})
    members = min(cfg.fanout_members, 500)
    for backend in backends:
        log(f"synapse {version} on {backend}")
        if todo & {"ws", "http", "sweep", "fanout", "catchup", "idle"}:
            server = Synapse(backend)
            try:
                server.start()
                server.setup(users=max(members, 64), senders=64, members=members)
                best = None
                if todo & {"ws", "http", "sweep"}:
                    # Matrix has no WebSocket: one request in flight per HTTP connection.
                    best = _try(w.send_max, server, "matrix", "http_max", cfg, conns=64)
                if "sweep" in todo and best:
                    _try(w.sweep, server, "matrix", best["rate"], cfg, conns=64)
                if "fanout" in todo:
                    _try(w.fanout, server, cfg, members)
                if "catchup" in todo:
                    _try(w.catchup, server, cfg, cfg.synapse_catchup_messages)
                if "idle" in todo:
                    _try(w.idle, server, cfg, cfg.synapse_idle_connections)
            finally:
                server.drop()
        if "cold" in todo:
            r = _try(cold_start, backend, 3)
            if r:
                w.save_cold("synapse", backend, r)


def _try(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except Exception as exc:
        log(f"  synapse {getattr(fn, '__name__', fn)} FAILED: {exc!r:.400}")
        return None
