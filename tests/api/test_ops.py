"""Health, metrics, connection limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from qunliao.app import create_app
from qunliao.settings import Settings
from tests.support.app import Harness, running_app


async def test_healthz_reports_database_and_bus(h: Harness) -> None:
    r = await h.client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["bus"] == {"kind": "memory", "healthy": True}


async def test_metrics_count_messages_and_batches(tmp_path: Path) -> None:
    token = "scrape-令牌-0123456789".encode().hex()
    async with running_app(f"sqlite:///{tmp_path / 'q.db'}", metrics_token=token) as h:
        alice, bob = await h.user("alice"), await h.user("bob")
        conversation = await h.direct(alice, bob)
        for i in range(3):
            await h.send(alice, conversation, f"m{i}")
        answer = await h.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    text = answer.text
    assert "qunliao_messages_committed_total 3.0" in text
    assert "qunliao_commit_batch_size_count" in text
    assert "qunliao_ws_connections 0.0" in text


def test_connections_per_ip_are_limited(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'q.db'}", max_connections_per_ip=2)
    with TestClient(create_app(settings)) as client:
        client.post("/api/v1/accounts", json={"username": "alice", "password": "password1",
                                               "display_name": "Alice"})  # fmt: skip
        token = client.post("/api/v1/sessions", json={
            "username": "alice", "password": "password1"}).json()["access_token"]  # fmt: skip
        url = f"/api/v1/ws?access_token={token}"
        with client.websocket_connect(url) as first, client.websocket_connect(url) as second:
            assert first.receive_json()["type"] == "synced"
            assert second.receive_json()["type"] == "synced"
            first.send_json({"type": "ping"})
            assert first.receive_json() == {"type": "pong"}
            second.send_json({"type": "ping"})
            assert second.receive_json() == {"type": "pong"}
            with pytest.raises(WebSocketDisconnect) as refused:
                with client.websocket_connect(url) as third:
                    third.receive_json()
            assert refused.value.code == 1013
        with client.websocket_connect(url) as again:  # the slots are free again
            assert again.receive_json()["type"] == "synced"
            again.send_json({"type": "ping"})
            assert again.receive_json() == {"type": "pong"}


async def test_the_api_reference_loads_nothing_from_outside(h: Harness) -> None:
    """/docs used to pull Swagger UI from a CDN onto the origin that holds the web client's
    token (issue 14, item 6): its files now come from the installed package."""
    import re

    page = await h.client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(
        r"url: '([^']+)'", page.text
    )
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    for url in urls:
        if url.startswith("/docs-assets/"):
            assert (await h.client.get(url)).status_code == 200, url
    assert "https://" not in page.text and "http://" not in page.text
    assert (await h.client.get("/openapi.json")).status_code == 200
