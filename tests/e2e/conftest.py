"""e2e fixtures: real `qunliao serve` processes on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from qunliao.sdk import Client

from .helpers import (
    BACKENDS,
    PASSWORD,
    MakeUser,
    ServerProcess,
    User,
    database,
    running_server,
)


@pytest.fixture(scope="session", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server shared by the tests that do not stop it (each test makes its own users)."""
    with running_server(request.param, tmp_path_factory.mktemp(f"e2e-{request.param}")) as proc:
        yield proc


@pytest.fixture(params=BACKENDS)
def fresh_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(database URL, workdir) of a brand-new database, for tests that own their server."""
    with database(request.param, tmp_path) as url:
        yield url, tmp_path


@pytest.fixture
async def make_user(server: ServerProcess) -> AsyncIterator[MakeUser]:
    """Register and log in a fresh user on the shared server."""
    clients: list[Client] = []

    async def make(prefix: str = "u", display_name: str | None = None) -> User:
        client = Client(server.url)
        clients.append(client)
        username = f"{prefix}_{secrets.token_hex(4)}"
        display = display_name or username
        user_id = await client.register(username, PASSWORD, display)
        session = await client.login(username, PASSWORD, device_name="e2e")
        assert session.user_id == user_id
        return User(client, user_id, username, display)

    yield make
    for client in clients:
        await client.aclose()
