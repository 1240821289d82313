from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qunliao.storage.migrate import migrate_sync
from tests.support.services import database_url


@pytest.fixture(params=["sqlite", "postgres"])
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database on each backend."""
    with database_url(request.param, tmp_path) as url:
        migrate_sync(url)
        yield url
