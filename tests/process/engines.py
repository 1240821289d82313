"""A `qunliao serve` per WebSocket engine, shared by the engine and hardening tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.helpers import ServerProcess

ENGINES = ["picows", "uvicorn"]


@contextmanager
def engine_server(engine: str, workdir: Path, **env: str) -> Iterator[ServerProcess]:
    """SQLite, no rate limit, the given engine; `env` adds QUNLIAO_* settings."""
    settings = {"QUNLIAO_WEBSOCKET_ENGINE": engine, "QUNLIAO_RATE_LIMIT_PER_S": "0", **env}
    proc = ServerProcess(f"sqlite:///{workdir / 'q.db'}", workdir, env=settings)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
