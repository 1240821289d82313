"""Shared fixtures of the process tests (each module that uses `http` defines `server`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.e2e.helpers import ServerProcess


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the module's `server`."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client
