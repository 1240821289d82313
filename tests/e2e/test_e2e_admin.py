"""`qunliao admin users …` against a database file, and against the database of a running
server (whose open sockets must close when the CLI ends their sessions); admin actions and
password changes over HTTP closing sockets with 4401."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qunliao.cli import cli
from qunliao.sdk import Client, QunliaoError

from .helpers import (
    PASSWORD,
    REPO,
    MakeUser,
    ServerProcess,
    database,
    require_env,
    server_python,
)

pytestmark = pytest.mark.e2e


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process, as an operator runs it next to the server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUNLIAO_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p
    )
    return subprocess.run(
        [server_python(), "-m", "qunliao", "admin", "users", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_admin_users_commands_on_a_database_file(tmp_path: Path) -> None:
    runner = CliRunner()
    url = ["--database-url", f"sqlite:///{tmp_path / 'q.db'}"]

    def admin(*args: str, stdin: str | None = None) -> tuple[int, str]:
        done = runner.invoke(cli, ["admin", "users", *args, *url], input=stdin)
        return done.exit_code, done.output

    code, out = admin("create", "boss", "--admin", "--password-stdin", stdin="老板的密码 boss pw\n")
    assert code == 0, out
    assert out.startswith("user_id: u_") and "password:" not in out
    code, out = admin("create", "alice", "--display-name", "爱丽丝 Alice")
    assert code == 0, out
    generated = out.split("password: ")[1].strip()
    assert len(generated) >= 16

    code, out = admin("list")
    assert code == 0, out
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["alice", "boss"]
    assert "爱丽丝 Alice" in lines[0] and lines[0].endswith("active")
    assert lines[1].endswith("admin")

    assert admin("deactivate", "alice")[0] == 0
    code, out = admin("show", "alice")
    assert code == 0 and "deactivated: true" in out and "is_admin: false" in out
    assert admin("reactivate", "alice")[0] == 0
    assert admin("make-admin", "alice")[0] == 0
    assert "is_admin: true" in admin("show", "alice")[1]
    assert admin("revoke-admin", "alice")[0] == 0
    code, out = admin("reset-password", "alice", "--password-stdin", stdin="new password 新\n")
    assert code == 0 and "password:" not in out.replace("password of", "")
    code, out = admin("reset-password", "alice")
    assert code == 0 and out.split("password: ")[1].strip() != generated

    # mistakes: a clear message and a non-zero exit, nothing changed
    code, out = admin("show", "nobody")
    assert code == 1 and "does not exist" in out
    code, out = admin("create", "alice", "--password-stdin", stdin="long enough\n")
    assert code == 1 and "taken" in out
    code, out = admin("create", "Bad Name!", "--password-stdin", stdin="long enough\n")
    assert code == 1 and "username" in out
    code, out = admin("create", "carol", "--password-stdin", stdin="short\n")
    assert code == 1 and "at least 8" in out
    code, out = admin("create", "carol", "--password-stdin", stdin="")
    assert code == 2
    assert [line.split("\t")[0] for line in admin("list")[1].splitlines()] == ["alice", "boss"]

    # the older `admin create-user` still works (a prompted password)
    done = runner.invoke(cli, ["admin", "create-user", "dave", *url], input="password 1\n" * 2)
    assert done.exit_code == 0 and "u_" in done.output

    # every action is in the audit log, the CLI's with a null actor
    with sqlite3.connect(tmp_path / "q.db") as db:
        rows = db.execute("SELECT action, actor_id FROM admin_audit ORDER BY entry_id").fetchall()
    assert [action for action, _ in rows] == [
        "user.create",
        "user.make_admin",
        "user.create",
        "user.deactivate",
        "user.reactivate",
        "user.make_admin",
        "user.revoke_admin",
        "user.reset_password",
        "user.reset_password",
        "user.create",
    ]
    assert {actor for _, actor in rows} == {None}


async def test_a_cli_deactivation_ends_an_open_session_within_10_s(
    server: ServerProcess, make_user: MakeUser
) -> None:
    alice = await make_user("alice", "爱丽丝")
    bob = await make_user("bob")
    async with alice.client.websocket() as ws, bob.client.websocket() as bob_ws:
        await ws.ping()
        await bob_ws.ping()
        started = time.monotonic()
        done = await asyncio.to_thread(
            run_cli, "deactivate", alice.username, "--database-url", server.database_url
        )
        assert done.returncode == 0, done.stderr
        assert "1 session(s) ended" in done.stdout
        why = await asyncio.wait_for(ws.wait_closed(), 10)
        assert time.monotonic() - started < 10
        assert ws.close_code == 4401 and isinstance(why, QunliaoError)
        assert not bob_ws.closed  # another user's socket stays
        with pytest.raises(QunliaoError) as refused:
            await alice.client.me()
        assert refused.value.status == 401
        again = Client(server.url)
        async with again:
            with pytest.raises(QunliaoError) as login:
                await again.login(alice.username, PASSWORD)
            assert (login.value.status, login.value.code) == (403, "forbidden")

    done = await asyncio.to_thread(
        run_cli, "reset-password", bob.username, "--database-url", server.database_url
    )
    assert done.returncode == 0, done.stderr
    with pytest.raises(QunliaoError) as ended:
        await bob.client.me()
    assert ended.value.status == 401


async def test_http_deactivation_and_password_changes_close_sockets_4401(
    server: ServerProcess, make_user: MakeUser
) -> None:
    boss = await make_user("boss")
    made = await asyncio.to_thread(
        run_cli, "make-admin", boss.username, "--database-url", server.database_url
    )
    assert made.returncode == 0, made.stderr
    alice = await make_user("alice")
    phone = await alice.device(server.url, "phone")
    async with phone, alice.client.websocket() as ws, phone.websocket() as phone_ws:
        await ws.ping()
        await phone_ws.ping()
        # changing my password closes my other device's socket, never this one's
        await alice.client.request(
            "POST",
            "/api/v1/me/password",
            {"current_password": PASSWORD, "new_password": "新密码 new one"},
        )
        await asyncio.wait_for(phone_ws.wait_closed(), 1.5)
        assert phone_ws.close_code == 4401
        await ws.ping()
        assert not ws.closed

        await boss.client.request("POST", f"/api/v1/admin/users/{alice.user_id}/deactivate")
        await asyncio.wait_for(ws.wait_closed(), 1.5)
        assert ws.close_code == 4401


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Two servers on one PostgreSQL database, sharing a Redis bus."""
    bus_url = require_env("QUNLIAO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    with database("postgres", tmp_path) as database_url:
        nodes = [
            ServerProcess(database_url, tmp_path, extra_args=["--bus-url", bus_url])
            for _ in range(2)
        ]
        try:
            for node in nodes:
                node.start()
            yield nodes
        finally:
            for node in nodes:
                node.stop()


async def test_a_deactivation_on_one_node_closes_sockets_on_the_other_within_1_s(
    two_nodes: list[ServerProcess],
) -> None:
    node_a, node_b = two_nodes
    made = await asyncio.to_thread(
        run_cli, "create", "boss", "--admin", "--password-stdin",
        "--database-url", node_a.database_url, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    async with Client(node_a.url) as boss, Client(node_b.url) as alice:
        await boss.login("boss", PASSWORD)
        alice_id = await alice.register("alice_mn", PASSWORD, "爱丽丝")
        await alice.login("alice_mn", PASSWORD)
        async with alice.websocket() as ws:
            await ws.ping()
            await boss.request("POST", f"/api/v1/admin/users/{alice_id}/deactivate")
            await asyncio.wait_for(ws.wait_closed(), 1.0)
            assert ws.close_code == 4401
