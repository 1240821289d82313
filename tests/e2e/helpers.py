"""Helpers for the e2e tests: a real `qunliao serve` process, fresh databases, test users."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
import pytest

from qunliao.sdk import Client, WebSocketConnection

REPO = Path(__file__).resolve().parents[2]
POSTGRES_ENV = "QUNLIAO_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgres"]
PASSWORD = "correct horse battery"


def server_python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """One `qunliao serve` process; can be killed (SIGKILL) and started again on the same port."""

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        port: int | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.extra_args = list(extra_args or [])
        self.extra_env = dict(env or {})
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log: IO[bytes] | None = None

    def _spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUNLIAO_")}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        # Every test registers its users from 127.0.0.1; a test of the limit passes its own.
        env["QUNLIAO_REGISTRATIONS_PER_ADDRESS_PER_MIN"] = "1000000"
        env.update(self.extra_env)
        self._log = self.log_path.open("ab")
        self._log.write(f"\n=== start #{self.starts + 1} ===\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            [
                server_python(),
                "-m",
                "qunliao",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--database-url",
                self.database_url,
                *self.extra_args,
            ],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.starts += 1

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"qunliao serve exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait (blocking) until GET /healthz answers 200."""
        self._spawn()
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"/healthz not ready in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    async def astart(self, ready_within: float = 30.0) -> float:
        """Start without blocking the event loop; returns seconds until /healthz was 200."""
        started = time.monotonic()
        self._spawn()
        async with httpx.AsyncClient(timeout=1.0) as http:
            while True:
                self._check_alive()
                try:
                    if (await http.get(self.url + "/healthz")).status_code == 200:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    pass
                if time.monotonic() - started > ready_within:
                    raise RuntimeError(
                        f"/healthz not ready in {ready_within} s:\n{self.log_tail()}"
                    )
                await asyncio.sleep(0.05)

    def _signal_group(self, signum: int) -> None:
        # The server runs in its own process group: `--workers N` children go down with it.
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)

    def kill(self) -> None:
        """kill -9 (the whole process group): no shutdown hooks, no flush, sockets reset."""
        if self.proc is not None:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close_log()

    def stop(self) -> None:
        """SIGTERM: a graceful stop (sockets get 1012); SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None:
            self._signal_group(signal.SIGKILL)  # leftovers of a group whose leader is gone
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _run_postgres(admin_url: str, sql: str) -> None:
    """One statement on the admin database, in a thread with its own event loop."""

    async def run() -> None:
        import asyncpg

        conn = await asyncpg.connect(admin_url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result(timeout=60)


def require_env(name: str, example: str) -> str:
    """The service URL in env `name`; skip without it (fail when CI requires services)."""
    value = os.environ.get(name)
    if not value:
        reason = f"{name} is not set (e.g. {example})"
        if os.environ.get("QUNLIAO_REQUIRE_SERVICES"):
            pytest.fail(reason)
        pytest.skip(reason)
    return value


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh, empty database URL: a new SQLite file, or a new PostgreSQL database (dropped)."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'q.db'}"
        return
    admin_url = require_env(POSTGRES_ENV, "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"qunliao_e2e_{secrets.token_hex(6)}"
    _run_postgres(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(admin_url)._replace(path="/" + name).geturl()
    finally:
        _run_postgres(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def running_server(backend: str, workdir: Path) -> Iterator[ServerProcess]:
    with database(backend, workdir) as url:
        server = ServerProcess(url, workdir)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@dataclass
class User:
    client: Client
    user_id: str
    username: str
    display_name: str

    async def device(self, server_url: str, name: str = "second") -> Client:
        """Log the same user in again: a new device with its own token."""
        other = Client(server_url)
        await other.login(self.username, PASSWORD, device_name=name)
        return other


MakeUser = Callable[..., Awaitable[User]]


async def next_event_of(
    ws: WebSocketConnection, predicate: Callable[[dict[str, Any]], bool], within: float = 10.0
) -> dict[str, Any]:
    """The first event from `ws` matching `predicate` (others are skipped)."""

    async def wait() -> dict[str, Any]:
        while True:
            event = await ws.next_event()
            if predicate(event):
                return event

    return await asyncio.wait_for(wait(), within)
