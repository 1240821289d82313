"""Schema migrations with alembic, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from qunliao.storage.db import async_url, sqlite_path

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    return config


def migrate_sync(database_url: str, revision: str = "head") -> None:
    path = sqlite_path(database_url)
    if path is not None and path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)


async def migrate(database_url: str, revision: str = "head") -> None:
    """Bring the schema up to date (alembic runs its own event loop, so it gets a thread)."""
    await asyncio.to_thread(migrate_sync, database_url, revision)
