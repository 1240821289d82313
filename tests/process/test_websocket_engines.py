"""The WebSocket behaves the same on both engines (picows, the default, and uvicorn's own),
on the port that also serves HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from tests.e2e.helpers import ServerProcess
from tests.process.engines import ENGINES, engine_server

PASSWORD = "correct horse"
LONG = "长消息 long message " * 700  # ~15 kB of UTF-8: longer than picows' copy buffer


@pytest.fixture(scope="module", params=ENGINES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with engine_server(request.param, tmp_path_factory.mktemp(f"engine-{request.param}")) as proc:
        yield proc


_names = iter(range(1_000_000))


async def _login(http: httpx.AsyncClient) -> dict[str, str]:
    name = f"engine{next(_names)}"
    body = {"username": name, "password": PASSWORD, "display_name": f"用户{name}"}
    assert (await http.post("/api/v1/accounts", json=body)).status_code == 201
    r = await http.post("/api/v1/sessions", json={"username": name, "password": PASSWORD})
    return dict(r.json())


async def _pair(http: httpx.AsyncClient) -> tuple[dict[str, str], dict[str, str], str]:
    alice, bob = await _login(http), await _login(http)
    r = await http.post(
        "/api/v1/conversations",
        headers={"Authorization": f"Bearer {alice['access_token']}"},
        json={"kind": "direct", "member_ids": [bob["user_id"]]},
    )
    return alice, bob, str(r.json()["conversation_id"])


def _ws_url(server: ServerProcess, query: str) -> str:
    return server.url.replace("http", "ws") + "/api/v1/ws?" + query


async def _next(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] == kind:
            return dict(frame)


async def test_http_shares_the_port(server: ServerProcess, http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json()["status"] == "ok"
    assert "/api/v1/sessions" in (await http.get("/openapi.json")).json()["paths"]
    near_miss = await http.get("/api/v1/wsx")  # shares the gateway's prefix: still HTTP
    assert near_miss.status_code == 404 and near_miss.json()["error"]["code"] == "not_found"


async def test_bad_token_and_bad_since_close_with_their_codes(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    async with websockets.connect(_ws_url(server, "access_token=nope")) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 4401
    alice = await _login(http)
    async with websockets.connect(
        _ws_url(server, f"access_token={alice['access_token']}&since=bogus")
    ) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 4400


async def test_send_ack_push_long_and_fragmented_frames(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    alice, bob, conversation = await _pair(http)
    url_a = _ws_url(server, f"access_token={alice['access_token']}")
    url_b = _ws_url(server, f"access_token={bob['access_token']}")
    async with websockets.connect(url_a, max_size=None) as wa, websockets.connect(url_b) as wb:
        await _next(wa, "synced")
        await _next(wb, "synced")
        texts = ["你好 hello", LONG, "片段 fragmented"]
        for n, text in enumerate(texts):
            frame = orjson.dumps({
                "type": "send", "conversation_id": conversation, "client_txn_id": f"t{n}",
                "msg_type": "text", "body": {"text": text},
            }).decode()  # fmt: skip
            if n == 2:
                await wa.send([frame[:10], frame[10:40], frame[40:]])  # one message, 3 frames
            else:
                await wa.send(frame)
            ack = await _next(wa, "ack")
            assert ack["client_txn_id"] == f"t{n}"
            pushed = await _next(wb, "message")
            assert pushed["body"]["text"] == text and pushed["message_id"] == ack["message_id"]
        await wa.send("not json {")
        error = await _next(wa, "error")
        assert error["error"]["code"] == "bad_request"
        await asyncio.wait_for(await wa.ping(), 5)  # pings are answered
        await wa.send(orjson.dumps({"type": "ping"}).decode())
        await _next(wa, "pong")


async def test_closed_sockets_are_forgotten(server: ServerProcess, http: httpx.AsyncClient) -> None:
    alice = await _login(http)
    sockets = [
        await websockets.connect(_ws_url(server, f"access_token={alice['access_token']}"))
        for _ in range(5)
    ]
    for ws in sockets:
        await _next(ws, "synced")
    assert (await http.get("/healthz")).json()["connections"] >= 5
    for ws in sockets:
        await ws.close()
    for _ in range(50):
        if (await http.get("/healthz")).json()["connections"] == 0:
            break
        await asyncio.sleep(0.1)
    assert (await http.get("/healthz")).json()["connections"] == 0


def test_unknown_engine_is_refused(tmp_path: Path) -> None:
    import subprocess

    from tests.e2e.helpers import server_python

    done = subprocess.run(
        [server_python(), "-m", "qunliao", "serve", "--database-url", f"sqlite:///{tmp_path}/q.db"],
        env={"QUNLIAO_WEBSOCKET_ENGINE": "tornado", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "websocket_engine" in done.stderr
