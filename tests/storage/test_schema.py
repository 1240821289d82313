"""The migrations build exactly the schema the code's table definitions describe."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from qunliao.storage.db import async_url, metadata


def _differences(url: str) -> list[Any]:
    async def compare() -> list[Any]:
        engine = create_async_engine(async_url(url))
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
                )
        finally:
            await engine.dispose()

    return asyncio.run(compare())


def test_migrated_schema_matches_the_table_definitions(migrated_url: str) -> None:
    import qunliao.app  # noqa: F401  (every feature registers its tables on the metadata)

    # Type spellings differ by backend (BIGINT vs INTEGER affinity) and are not compared;
    # tables, columns, indexes and their column order are.
    assert _differences(migrated_url) == []
