"""`qunliao doctor` says what is wrong with a configuration, and fails only on real problems."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from qunliao.cli import cli
from qunliao.storage.migrate import migrate_sync

REDIS = os.environ.get("QUNLIAO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def doctor(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["doctor", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_a_fresh_sqlite_setup_is_fine_and_an_unreachable_bus_is_not(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    code, out = doctor("--database-url", url, "--config", str(tmp_path / "none.toml"))
    assert code == 0, out
    assert "does not exist yet" in out and "qunliao migrate" in out
    code, out = doctor("--database-url", url, "--bus-url", "redis://127.0.0.1:1/0")
    assert code == 1 and "redis unreachable" in out


def test_a_schema_behind_the_code_fails_until_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    migrate_sync(url, "0005")
    code, out = doctor("--database-url", url, "--bus-url", REDIS)
    assert code == 1 and "schema at 0005" in out, out
    migrate_sync(url)
    code, out = doctor("--database-url", url, "--bus-url", REDIS)
    assert code == 0 and "schema at head" in out and "redis answers" in out, out


def test_several_workers_need_postgresql_and_a_bus(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    config = tmp_path / "qunliao.toml"
    config.write_text("[qunliao]\nworkers = 2\n", encoding="utf-8")
    code, out = doctor("--database-url", url, "--config", str(config))
    assert code == 1 and "SQLite has one writer" in out and "share events through a bus" in out
