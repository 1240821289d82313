"""Schema migrations with alembic, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config

from qunliao.storage.db import async_url, sqlite_path

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_PAGE_SIZE = 2048


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    return config


def migrate_sync(database_url: str, revision: str = "head") -> None:
    path = sqlite_path(database_url)
    if path is not None:
        if path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.stat().st_size == 0:
            create_sqlite(path)
    command.upgrade(alembic_config(database_url), revision)


def create_sqlite(path: Path, page_size: int = SQLITE_PAGE_SIZE) -> None:
    """A new SQLite file with 2 KiB pages (fixed at creation; SQLite's default is 4 KiB).

    Each commit writes every page it changed to the WAL whole, and a message changes a leaf
    in each of its conversation's indexes: smaller pages cut the WAL written per message in
    small batches by a third (bench/sqlite_batch.py --page-size).
    """
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"PRAGMA page_size = {int(page_size)}")
        conn.execute("PRAGMA journal_mode = WAL")  # writes the header: the page size is set
    finally:
        conn.close()


async def migrate(database_url: str, revision: str = "head") -> None:
    """Bring the schema up to date (alembic runs its own event loop, so it gets a thread)."""
    await asyncio.to_thread(migrate_sync, database_url, revision)
