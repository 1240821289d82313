"""A reader that stops reading is cut off with a resume token; it loses nothing by it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import orjson
import pytest
import websockets

from tests.process.engines import ENGINES, engine_server

PASSWORD = "correct horse"
MESSAGES = 600
TEXT = "满" * 5000  # 15 kB of UTF-8 each: the socket buffers fill after a few hundred


async def _login(http: httpx.AsyncClient, name: str) -> dict[str, str]:
    await http.post("/api/v1/accounts", json={"username": name, "password": PASSWORD,
                                              "display_name": name})  # fmt: skip
    r = await http.post("/api/v1/sessions", json={"username": name, "password": PASSWORD})
    return dict(r.json())


def _small_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


@pytest.mark.parametrize("engine", ENGINES)
async def test_stalled_reader_is_closed_4008_and_resumes(tmp_path: Path, engine: str) -> None:
    with engine_server(engine, tmp_path, QUNLIAO_WS_QUEUE_LIMIT="32") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            slow, fast = await _login(http, "slow"), await _login(http, "fast")
            auth = {"Authorization": f"Bearer {fast['access_token']}"}
            body = {"kind": "direct", "member_ids": [slow["user_id"]]}
            conversation = (await http.post("/api/v1/conversations", headers=auth,
                                            json=body)).json()["conversation_id"]  # fmt: skip
            ws_base = server.url.replace("http", "ws") + "/api/v1/ws?access_token="
            stalled = await websockets.connect(ws_base + slow["access_token"],
                                               sock=_small_socket(server.port),
                                               max_queue=1, max_size=None)  # fmt: skip
            synced = orjson.loads(await stalled.recv())
            assert synced["type"] == "synced"
            # the stalled client now reads nothing while the other side keeps talking
            sends = asyncio.Semaphore(16)

            async def send(i: int) -> None:
                async with sends:
                    r = await http.post(
                        f"/api/v1/conversations/{conversation}/messages", headers=auth,
                        json={"client_txn_id": f"t{i}", "msg_type": "text",
                              "body": {"text": f"{i} {TEXT}"}},
                    )  # fmt: skip
                    assert r.status_code == 201, r.text

            # the sender is not held back by the stalled reader
            await asyncio.wait_for(asyncio.gather(*(send(i) for i in range(MESSAGES))), 120)
            got: list[int] = []
            last_token = synced["next_token"]
            try:
                async for raw in stalled:
                    frame = orjson.loads(raw)
                    if frame["type"] == "message":
                        got.append(int(frame["body"]["text"].split(" ", 1)[0]))
                        last_token = frame["token"]
            except websockets.ConnectionClosed:
                pass
            assert stalled.close_code == 4008
            reason = stalled.close_reason or ""
            assert "since=" in reason
            assert len(got) < MESSAGES  # it really was cut off
            since = parse_qs(reason.split("; ", 1)[-1].replace("reconnect with ", ""))["since"][0]
            assert since == last_token or since  # the reason carries where to resume
            async with websockets.connect(f"{ws_base}{slow['access_token']}&since={since}",
                                          max_size=None) as again:  # fmt: skip
                async for raw in again:
                    frame = orjson.loads(raw)
                    if frame["type"] == "message":
                        got.append(int(frame["body"]["text"].split(" ", 1)[0]))
                    if frame["type"] == "synced":
                        break
            # nothing lost, nothing twice; one sender's concurrent sends commit in any order
            assert sorted(got) == list(range(MESSAGES)) and len(got) == MESSAGES
            await asyncio.sleep(0)
