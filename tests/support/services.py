"""Local services for tests: URLs from the environment, fresh PostgreSQL databases."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

REQUIRED = os.environ.get("QUNLIAO_REQUIRE_SERVICES") == "1" or os.environ.get("CI") == "true"


def service_url(name: str) -> str:
    """The URL of a local service, or skip (fail in CI) when it is not configured."""
    variable = f"QUNLIAO_TEST_{name.upper()}_URL"
    url = os.environ.get(variable)
    if not url:
        message = f"{variable} is not set: {name} tests need a local {name}"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return url


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


async def _admin_async(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _admin(url: str, sql: str) -> None:
    """Run one admin statement on its own loop (callers may be inside a running loop)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _admin_async(url, sql)).result()


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A brand-new PostgreSQL database, dropped afterwards."""
    admin_url = service_url("postgres")
    name = f"qunliao_t_{secrets.token_hex(6)}"
    _admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(admin_url, name)
    finally:
        _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'qunliao.db'}"
    else:
        with fresh_postgres() as url:
            yield url
