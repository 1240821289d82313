"""`qunliao doctor`: look at a configuration the way the server would use it, and say what to fix.

Each check returns a `Finding` (ok, warn or fail, with what to do). Nothing is changed: the
database is only read (its schema version), the bus only pinged.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass
from typing import Literal

from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from qunliao.settings import Settings
from qunliao.storage.db import async_url, sqlite_path
from qunliao.storage.migrate import alembic_config

Level = Literal["ok", "warn", "fail"]
TIMEOUT_S = 5.0
FD_RESERVE = 256  # as realtime/connections.py keeps aside


@dataclass(frozen=True)
class Finding:
    check: str
    level: Level
    what: str
    fix: str = ""


def check_all(settings: Settings) -> list[Finding]:
    findings = [*check_processes(settings), check_descriptors(settings), *check_policy(settings)]
    findings.append(asyncio.run(check_database(settings.database_url)))
    findings.append(asyncio.run(check_bus(settings.bus_url)))
    return findings


def check_processes(settings: Settings) -> list[Finding]:
    found = []
    if settings.workers > 1 and settings.database_url.startswith("sqlite"):
        found.append(Finding("workers", "fail", f"workers = {settings.workers} on SQLite",
                             "SQLite has one writer: use workers = 1, or PostgreSQL"))  # fmt: skip
    if settings.workers > 1 and settings.bus_url.startswith("memory"):
        found.append(Finding("workers", "fail", f"workers = {settings.workers} on memory://",
                             "processes share events through a bus: set bus_url to redis:// "
                             "or nats://"))  # fmt: skip
    if not found:
        found.append(Finding("workers", "ok", f"{settings.workers} process(es)"))
    return found


def check_descriptors(settings: Settings) -> Finding:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    usable = soft if hard == resource.RLIM_INFINITY else max(soft, hard)
    needed = settings.max_connections + FD_RESERVE
    if usable < needed:
        return Finding(
            "open files",
            "warn",
            f"the hard limit is {usable}; max_connections = {settings.max_connections} needs "
            f"{needed}, so the server will lower it to {max(1, usable - FD_RESERVE)}",
            "raise it (systemd: LimitNOFILE=65536; shell: ulimit -n) or lower max_connections",
        )
    return Finding("open files", "ok", f"limit {usable} ≥ {needed} needed")


def check_policy(settings: Settings) -> list[Finding]:
    found = []
    if settings.registration == "open":
        found.append(Finding("registration", "warn", "open: anyone who reaches the server can "
                             "make an account", "on a public server set registration = "
                             "\"invite\" or \"closed\" (docs/operations.md)"))  # fmt: skip
    else:
        found.append(Finding("registration", "ok", settings.registration))
    if settings.rate_limits == "off":
        found.append(Finding("rate limits", "warn", "off (meant for load tests only)",
                             "remove rate_limits = \"off\""))  # fmt: skip
    return found


async def check_database(url: str) -> Finding:
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return Finding("database", "warn", f"{path} does not exist yet",
                       "`qunliao migrate` or `qunliao serve` creates it")  # fmt: skip
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = create_async_engine(async_url(url))
    try:
        async with asyncio.timeout(TIMEOUT_S), engine.connect() as conn:
            try:
                current = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar()
            except Exception:
                current = None
    except Exception as exc:
        return Finding("database", "fail", f"cannot connect: {type(exc).__name__}: {exc}",
                       "check database_url: is the server up, is this user allowed?")  # fmt: skip
    finally:
        await engine.dispose()
    if current is None:
        return Finding("database", "warn", "reachable, but has no qunliao schema yet",
                       "`qunliao migrate` (or `qunliao serve`) creates it")  # fmt: skip
    if current != head:
        return Finding("database", "fail", f"schema at {current}, this version needs {head}",
                       "run `qunliao migrate` (the server does at start)")  # fmt: skip
    return Finding("database", "ok", f"reachable, schema at head ({head})")


async def check_bus(url: str) -> Finding:
    kind = url.split("://", 1)[0]
    if kind == "memory":
        return Finding("bus", "ok", "memory:// (one process)")
    try:
        async with asyncio.timeout(TIMEOUT_S):
            if kind.startswith("redis"):
                import redis.asyncio as aioredis

                client = aioredis.from_url(url)
                try:
                    await client.ping()
                finally:
                    await client.aclose()
            else:
                import nats

                conn = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0,
                                          allow_reconnect=False)  # fmt: skip
                await conn.close()
    except Exception as exc:
        return Finding("bus", "fail", f"{kind} unreachable: {type(exc).__name__}: {exc}",
                       "check bus_url and that Redis/NATS runs; until then each gateway only "
                       "polls the database (slower delivery)")  # fmt: skip
    return Finding("bus", "ok", f"{kind} answers")
