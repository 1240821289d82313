"""`qunliao export --user | --conversation` against the database (SQLite, PostgreSQL) a server
wrote: what a user may see (their spans only, recalled as recalled, edits as the latest text),
and a safe HTML page."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from qunliao.cli import cli
from tests.support.app import running_app
from tests.support.services import database_url

SCRIPT = "<script>alert('x')</script> & \"quotes\""


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


async def seed(url: str) -> dict[str, Any]:
    """Alice and Bob's group (Carol joins late), a direct chat, and Bob and Carol's own group."""
    async with running_app(url) as h:
        alice = await h.user("alice", display_name="爱丽丝 Alice")
        bob = await h.user("bob", display_name="鲍勃 Bob")
        carol = await h.user("carol", display_name="卡罗尔 Carol")
        group = await h.group(alice, bob, title="项目组 <b>team</b>")
        texts = ["你好，世界", "hello world", SCRIPT]
        for n, text in enumerate(texts):
            r = await h.send(alice if n % 2 == 0 else bob, group, text)
            assert r.status_code in (200, 201), r.text
        r = await h.send(bob, group, "秘密 secret, recalled")
        recalled_id = r.json()["message_id"]
        r = await h.call(
            bob, "POST", f"/api/v1/conversations/{group}/messages/{recalled_id}/recall"
        )
        assert r.status_code == 200, r.text
        r = await h.send(alice, group, "first draft 草稿")
        edited_id = r.json()["message_id"]
        r = await h.call(
            alice, "PATCH", f"/api/v1/conversations/{group}/messages/{edited_id}",
            json={"body": {"text": "final text 定稿"}},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        r = await h.call(
            alice, "POST", f"/api/v1/conversations/{group}/members",
            json={"user_ids": [carol.user_id]},
        )  # fmt: skip
        assert r.status_code == 200 and r.json()["added"] == [carol.user_id], r.text
        await h.send(carol, group, "卡罗尔来了 carol here")
        direct = await h.direct(alice, bob)
        await h.send(bob, direct, "私聊 private hi")
        elsewhere = await h.group(bob, carol, title="别的群 other")
        await h.send(carol, elsewhere, "not for alice 不给爱丽丝")
        return {
            "alice": alice, "bob": bob, "carol": carol, "group": group, "direct": direct,
            "elsewhere": elsewhere, "recalled_id": recalled_id, "edited_id": edited_id,
        }  # fmt: skip


def load(out: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]], str]:
    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    files = {
        c["conversation_id"]: json.loads((out / c["file"]).read_text(encoding="utf-8"))
        for c in index["conversations"]
    }
    return index, files, (out / "index.html").read_text(encoding="utf-8")


def texts(conversation: dict[str, Any]) -> list[str | None]:
    return [(m["body"] or {}).get("text") for m in conversation["messages"]]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_export_a_user_and_a_conversation(tmp_path: Path, backend: str) -> None:
    with database_url(backend, tmp_path) as url:
        await check_exports(tmp_path, url)


async def check_exports(tmp_path: Path, url: str) -> None:
    made = await seed(url)
    alice, carol = made["alice"], made["carol"]

    out = tmp_path / "alice-export"
    code, stdout, stderr = await asyncio.to_thread(
        run, "export", "--user", alice.username, "--out", str(out), "--database-url", url
    )
    assert code == 0, stderr
    assert "exported 2 conversation(s)" in stdout
    index, files, page = load(out)
    assert index["user"]["user_id"] == alice.user_id
    assert index["user"]["display_name"] == "爱丽丝 Alice"
    # Her group and her direct chat; never Bob and Carol's group.
    assert set(files) == {made["group"], made["direct"]}
    assert made["elsewhere"] not in page and "不给爱丽丝" not in page

    group = files[made["group"]]
    assert group["conversation"]["title"] == "项目组 <b>team</b>"
    assert texts(group) == [
        "你好，世界", "hello world", SCRIPT, None, "final text 定稿", "卡罗尔来了 carol here",
    ]  # fmt: skip
    by_id = {m["message_id"]: m for m in group["messages"]}
    recalled = by_id[made["recalled_id"]]
    assert recalled["recalled_at"] is not None and recalled["body"] is None
    edited = by_id[made["edited_id"]]
    assert edited["edited_at"] is not None
    assert "first draft" not in json.dumps(files, ensure_ascii=False)
    assert "秘密" not in page and "first draft" not in page
    names = {p["user_id"]: p["display_name"] for p in group["participants"]}
    assert names[made["bob"].user_id] == "鲍勃 Bob"
    assert [m["seq"] for m in group["messages"]] == sorted(m["seq"] for m in group["messages"])
    assert texts(files[made["direct"]]) == ["私聊 private hi"]

    # The page stands alone, says its encoding, and shows hostile text as text.
    assert '<meta charset="utf-8">' in page
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    assert "项目组 &lt;b&gt;team&lt;/b&gt;" in page
    assert "你好，世界" in page and "已撤回" in page and "final text 定稿" in page
    assert "http://" not in page and "https://" not in page and "<link" not in page

    # Carol joined late: her export of the group starts at her join.
    carol_out = tmp_path / "carol"
    code, _, stderr = await asyncio.to_thread(
        run, "export", "--user", carol.username, "--out", str(carol_out), "--database-url", url
    )
    assert code == 0, stderr
    _, carol_files, _ = load(carol_out)
    assert texts(carol_files[made["group"]]) == ["卡罗尔来了 carol here"]
    assert texts(carol_files[made["elsewhere"]]) == ["not for alice 不给爱丽丝"]

    # A whole conversation: every message, whoever reads it.
    conv_out = tmp_path / "conversation"
    code, stdout, stderr = await asyncio.to_thread(
        run, "export", "--conversation", made["group"], "--out", str(conv_out),
        "--database-url", url,
    )  # fmt: skip
    assert code == 0, stderr
    index, files, page = load(conv_out)
    assert index["user"] is None and list(files) == [made["group"]]
    assert len(files[made["group"]]["messages"]) == 6
    participants = {p["user_id"] for p in files[made["group"]]["participants"]}
    assert participants == {alice.user_id, made["bob"].user_id, carol.user_id}
    assert "<script" not in page.lower()


async def test_export_refuses_bad_input(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'qunliao.db'}"
    await seed(url)
    out = tmp_path / "out"
    db = ("--database-url", url)
    code, _, stderr = await asyncio.to_thread(run, "export", "--out", str(out), *db)
    assert code == 2 and "exactly one" in stderr
    code, _, stderr = await asyncio.to_thread(
        run, "export", "--user", "a", "--conversation", "c1", "--out", str(out), *db
    )
    assert code == 2
    code, _, stderr = await asyncio.to_thread(
        run, "export", "--user", "nobody_here", "--out", str(out), *db
    )
    assert code == 1 and "does not exist" in stderr
    code, _, stderr = await asyncio.to_thread(
        run, "export", "--conversation", "c_missing", "--out", str(out), *db
    )
    assert code == 1 and "does not exist" in stderr
    assert not out.exists()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    code, _, stderr = await asyncio.to_thread(
        run, "export", "--user", "x", "--out", str(a_file), *db
    )
    assert code == 2 and "not a directory" in stderr
