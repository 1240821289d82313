"""SQLite's WAL under steady writes: checkpoints let it start over, so it stays small."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import struct
from pathlib import Path

import pytest

from qunliao.storage import db as db_module
from qunliao.storage.migrate import SQLITE_PAGE_SIZE, migrate, migrate_sync
from tests.storage.test_eventlog import _message, _writer


def _wal_frames(path: Path) -> int:
    """Frames in use in the WAL (they count from 0 again after the WAL started over).

    It asks by running a checkpoint: only where nothing writes meanwhile."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[1])
    finally:
        conn.close()


def _frames_in_use(path: Path) -> int:
    """The WAL-index header's mxFrame (offset 16 of the -shm file, sqlite.org/walformat.html):
    read without taking part, unlike a checkpoint."""
    return int(struct.unpack_from("=I", path.with_name(path.name + "-shm").read_bytes(), 16)[0])


async def test_the_wal_starts_over_again_and_again_under_steady_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "CHECKPOINT_INTERVAL_S", 0.02)
    path = tmp_path / "q.db"
    url = f"sqlite:///{path}"
    await migrate(url)
    async with _writer(url) as (writer, committed):
        frames: list[int] = []

        async def sender(k: int) -> None:  # 20 of them: a send is always waiting for a batch
            for i in range(300):
                await writer.submit(_message("c_a", f"消息 {k}.{i} " + "字" * 200))

        async def watch() -> None:
            while True:
                await asyncio.sleep(0.005)
                frames.append(_frames_in_use(path))

        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(sender(k) for k in range(20)))
        watcher.cancel()
    assert len(committed) == 6000
    # Without a checkpoint that completes, the WAL only grows while the writes go on (the old
    # checkpointer managed it about never); here it started over from frame 0 again and again.
    restarts = sum(later < earlier for earlier, later in itertools.pairwise(frames))
    assert restarts >= 3, (restarts, frames[::10])


async def test_a_checkpoint_copies_everything_and_the_next_write_starts_the_wal_over(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.db"
    url = f"sqlite:///{path}"
    await migrate(url)
    async with _writer(url) as (writer, _committed):
        for i in range(50):
            await writer.submit(_message("c_a", f"hello {i}"))
        assert _wal_frames(path) >= 50
        await writer._db.checkpoint()
        await writer.submit(_message("c_a", "after"))
        assert _wal_frames(path) < 20


def test_new_sqlite_databases_use_small_pages(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    migrate_sync(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == SQLITE_PAGE_SIZE == 2048
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_an_existing_database_keeps_its_page_size(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE before_us (x INTEGER)")  # created with SQLite's default
    conn.close()
    migrate_sync(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    finally:
        conn.close()


def test_a_new_database_in_the_working_directory_uses_small_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    migrate_sync("sqlite:///here.db")
    conn = sqlite3.connect(tmp_path / "here.db")
    try:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == SQLITE_PAGE_SIZE
    finally:
        conn.close()
