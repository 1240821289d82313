from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.app import Harness, running_app
from tests.support.services import database_url


@pytest.fixture(params=["sqlite", "postgres"])
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """The whole app in-process on a fresh database (SQLite and PostgreSQL)."""
    with database_url(request.param, tmp_path) as url:
        async with running_app(url) as harness:
            yield harness
