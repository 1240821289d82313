"""A user's own export over HTTP: `POST /api/v1/me/export` (a job), its state, and its zip, for
its owner only."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from qunliao.features.messages.export_jobs import STALE_AFTER_MS, state_on_disk
from tests.support.app import Account, Harness, running_app
from tests.support.services import database_url


@pytest.fixture(params=["sqlite", "postgres"])
async def hx(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    with database_url(request.param, tmp_path) as url:
        async with running_app(url, export_dir=str(tmp_path / "exports")) as harness:
            yield harness


async def ready(h: Harness, who: Account, export_id: str) -> dict[str, Any]:
    for _ in range(500):  # the job runs on this event loop: yield to it until it is done
        r = await h.call(who, "GET", f"/api/v1/me/export/{export_id}")
        assert r.status_code == 200, r.text
        if r.json()["state"] != "running":
            return dict(r.json())
        await asyncio.sleep(0.01)
    raise AssertionError("the export did not finish")


async def test_my_export(hx: Harness) -> None:
    h = hx
    alice = await h.user("alice", display_name="爱丽丝 Alice")
    bob = await h.user("bob", display_name="鲍勃 Bob")
    carol = await h.user("carol")
    group = await h.group(alice, bob, title="小组 team")
    await h.send(alice, group, "你好 <script>alert(1)</script>")
    await h.send(bob, group, "hello 世界")
    elsewhere = await h.group(bob, carol, title="别处 elsewhere")
    await h.send(carol, elsewhere, "not alice's")

    r = await h.call(None, "POST", "/api/v1/me/export")
    assert r.status_code == 401
    r = await h.call(alice, "POST", "/api/v1/me/export")
    assert r.status_code == 202, r.text
    export_id = r.json()["export_id"]
    state = await ready(h, alice, export_id)
    assert state["state"] == "ready", state
    assert state["url"] == f"/api/v1/me/export/{export_id}/download"

    # Only its owner finds it: another user, a made-up id and a path trick are all 404.
    for path in (f"/api/v1/me/export/{export_id}", state["url"]):
        r = await h.call(bob, "GET", path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    for bad in ("x_" + "A" * 24, "x_..%2F..%2Fetc", "..%2F..%2Fx", "不存在"):
        r = await h.call(alice, "GET", f"/api/v1/me/export/{bad}")
        assert r.status_code == 404, (bad, r.text)
        r = await h.call(alice, "GET", f"/api/v1/me/export/{bad}/download")
        assert r.status_code == 404, (bad, r.text)
    r = await h.call(None, "GET", state["url"])
    assert r.status_code == 401

    r = await h.call(alice, "GET", state["url"])
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zipped:
        index = json.loads(zipped.read("index.json"))
        assert index["user"]["user_id"] == alice.user_id
        assert [c["conversation_id"] for c in index["conversations"]] == [group]
        messages = json.loads(zipped.read(index["conversations"][0]["file"]))["messages"]
        assert [m["body"]["text"] for m in messages] == [
            "你好 <script>alert(1)</script>", "hello 世界",
        ]  # fmt: skip
        page = zipped.read("index.html").decode("utf-8")
    assert '<meta charset="utf-8">' in page and "<script" not in page
    assert "你好 &lt;script&gt;alert(1)&lt;/script&gt;" in page and "not alice" not in page

    # A new export replaces the previous one.
    r = await h.call(alice, "POST", "/api/v1/me/export")
    assert r.status_code == 202
    newer = r.json()["export_id"]
    assert newer != export_id
    assert (await ready(h, alice, newer))["state"] == "ready"
    r = await h.call(alice, "GET", f"/api/v1/me/export/{export_id}")
    assert r.status_code == 404


def test_export_states_on_disk(tmp_path: Path) -> None:
    """What any worker reads from an export's folder (a job that died counts as failed)."""
    where = tmp_path / "u_1" / "x_abc"
    assert state_on_disk(where, 10_000_000) is None
    where.mkdir(parents=True)
    (where / "running").write_text("10000000")
    assert state_on_disk(where, 10_000_000 + STALE_AFTER_MS - 1) == "running"
    assert state_on_disk(where, 10_000_000 + STALE_AFTER_MS) == "failed"
    (where / "running").write_text("garbage")
    assert state_on_disk(where, 10_000_000) == "failed"
    (where / "export.zip").write_bytes(b"PK")
    assert state_on_disk(where, 10_000_000) == "ready"
