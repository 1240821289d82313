"""Operator commands: concurrent migrations, bumping positions after a restore."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from qunliao.storage import eventlog
from qunliao.storage.db import Database
from qunliao.storage.migrate import migrate_sync
from tests.support.services import database_url


def test_gateways_migrating_at_once_take_turns(tmp_path: Path) -> None:
    with database_url("postgres", tmp_path) as url:
        command = [sys.executable, "-m", "qunliao", "migrate", "--database-url", url]
        runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                for _ in range(4)]  # fmt: skip
        for run in runs:
            output, _ = run.communicate(timeout=120)
            assert run.returncode == 0, output.decode()  # none trips on a half-made table


def test_bump_positions_moves_tokens_and_seqs_forward(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    migrate_sync(url)
    command = [sys.executable, "-m", "qunliao", "admin", "bump-positions", "--by", "500",
               "--database-url", url]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert "after 500" in out.stdout

    async def check() -> int:
        db = Database(url)
        await db.start()
        try:
            async with db.read() as conn:
                return await eventlog.max_position(conn)
        finally:
            await db.close()

    import asyncio

    assert asyncio.run(check()) == 500
