"""`qunliao admin invites create | list | revoke` against a SQLite file that a server uses, and
`qunliao --version`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qunliao import __version__
from qunliao.cli import cli
from qunliao.features.accounts import parse_duration
from tests.support.app import PASSWORD, running_app


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_version() -> None:
    code, out, _ = run("--version")
    assert code == 0
    assert out.strip() == f"qunliao {__version__}"
    real = subprocess.run(
        [sys.executable, "-m", "qunliao", "--version"], capture_output=True, text=True, timeout=60
    )
    assert real.returncode == 0
    assert __version__ in real.stdout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 7 * 86_400), ("12h", 43_200), ("30m", 1800), ("90s", 90), ("3600", 3600),
     ("2w", 14 * 86_400), (" 1D ", 86_400)],
)  # fmt: skip
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "7x", "-1d", "1.5h", "七d", "7 d", "٧d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


async def register(url: str, username: str, code: str) -> int:
    async with running_app(url, registration="invite") as h:
        r = await h.client.post(
            "/api/v1/accounts",
            json={"username": username, "password": PASSWORD, "display_name": "邀请 invited",
                  "invite_code": code},
        )  # fmt: skip
        return r.status_code


async def test_invites_from_the_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'qunliao.db'}"
    db = ("--database-url", url)

    def cli_run(*args: str) -> tuple[int, str, str]:
        return run("admin", "invites", *args, *db)

    # The CLI stamps real time; the in-process app runs on a fake clock set in January 2027.
    status, out, err = await asyncio.to_thread(
        cli_run, "create", "--uses", "2", "--expires", "1000d"
    )
    assert status == 0, err
    code = out.strip()  # stdout holds the code alone, for scripts
    assert len(code) >= 22 and code.replace("-", "").replace("_", "").isalnum()
    assert "2 uses" in err and "registration is 'open'" in err  # this config is not "invite"

    status, out, _ = await asyncio.to_thread(cli_run, "list")
    [line] = out.splitlines()
    invite_id, used, state, *_ = line.split("\t")
    assert (used, state) == ("0/2", "usable")
    assert code not in out  # stored hashed

    assert await register(url, "from_cli", code) == 201
    status, out, _ = await asyncio.to_thread(cli_run, "revoke", code)  # by the code itself
    assert (status, out.strip()) == (0, f"revoked {invite_id}")
    assert await register(url, "too_late", code) == 403

    status, out, err = await asyncio.to_thread(cli_run, "list")
    assert out == "" and "no usable invites" in err
    status, out, _ = await asyncio.to_thread(cli_run, "list", "--all")
    assert out.split("\t")[1:3] == ["1/2", "revoked"]

    status, _, err = await asyncio.to_thread(cli_run, "revoke", "inv_nope")
    assert status == 1 and "no such invite" in err
    status, _, err = await asyncio.to_thread(cli_run, "create", "--expires", "soon")
    assert status == 2 and "--expires" in err
    status, _, _ = await asyncio.to_thread(cli_run, "create", "--uses", "0")
    assert status == 2
