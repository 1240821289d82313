"""SIGTERM: stop accepting, finish in-flight commits, tell sockets to reconnect (1012), exit."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import orjson
import websockets

from tests.e2e.helpers import ServerProcess

PASSWORD = "correct horse"


async def _login(http: httpx.AsyncClient, name: str) -> dict[str, str]:
    await http.post("/api/v1/accounts", json={"username": name, "password": PASSWORD,
                                              "display_name": name})  # fmt: skip
    r = await http.post("/api/v1/sessions", json={"username": name, "password": PASSWORD})
    return dict(r.json())


async def test_sigterm_drains_and_closes_sockets_with_1012(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path / 'q.db'}", tmp_path,
                           env={"QUNLIAO_RATE_LIMIT_PER_S": "0"})  # fmt: skip
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            alice, bob = await _login(http, "alice"), await _login(http, "bob")
            auth = {"Authorization": f"Bearer {alice['access_token']}"}
            body = {"kind": "direct", "member_ids": [bob["user_id"]]}
            r = await http.post("/api/v1/conversations", headers=auth, json=body)
            conversation = r.json()["conversation_id"]
        ws_url = server.url.replace("http", "ws") + "/api/v1/ws?access_token="
        acked: dict[str, str] = {}
        async with websockets.connect(ws_url + alice["access_token"]) as ws:
            for i in range(300):
                await ws.send(orjson.dumps({
                    "type": "send", "conversation_id": conversation, "client_txn_id": f"t{i}",
                    "msg_type": "text", "body": {"text": f"消息 {i}"},
                }).decode())  # fmt: skip
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            began = time.monotonic()
            close_code = None
            try:
                async for raw in ws:
                    frame = orjson.loads(raw)
                    if frame["type"] == "ack":
                        acked[frame["client_txn_id"]] = frame["message_id"]
            except websockets.ConnectionClosed as closed:
                close_code = closed.rcvd.code if closed.rcvd else None
            close_code = close_code or (ws.close_code)
        assert close_code == 1012  # "service restart": reconnect elsewhere
        # uvicorn re-raises the signal once its graceful shutdown is done
        assert server.proc.wait(timeout=15) in (0, -signal.SIGTERM)
        assert "qunliao stopped cleanly" in server.log_tail(20)
        assert time.monotonic() - began < 12
        server.start()  # same database: everything acked is there; retries store the rest once
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            auth = {"Authorization": f"Bearer {alice['access_token']}"}
            for i in range(300):
                r = await http.post(f"/api/v1/conversations/{conversation}/messages", headers=auth,
                                    json={"client_txn_id": f"t{i}", "msg_type": "text",
                                          "body": {"text": f"消息 {i}"}})  # fmt: skip
                assert r.status_code in (200, 201), r.text
                if f"t{i}" in acked:
                    assert r.status_code == 200 and r.json()["message_id"] == acked[f"t{i}"]
            seen: list[str] = []
            before = None
            while True:
                params = {"limit": 200} | ({"before_seq": before} if before else {})
                page = (await http.get(f"/api/v1/conversations/{conversation}/messages",
                                       headers=auth, params=params)).json()["messages"]  # fmt: skip
                if not page:
                    break
                seen.extend(m["body"]["text"] for m in page)
                before = page[-1]["seq"]
        assert sorted(seen) == sorted(f"消息 {i}" for i in range(300))
        assert len(seen) == len(set(seen)) == 300
        await asyncio.sleep(0)
    finally:
        server.stop()
