"""qunliao.sdk WebSocket and listen(), against a tiny fake server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from qunliao.sdk import Client, QunliaoConnectionError, QunliaoError, RetryPolicy
from qunliao_sdk.websocket import close_error

Handler = Callable[[ServerConnection], Awaitable[None]]


def identified(client: Client) -> Client:
    """A client that knows who it is already: these fake servers answer no `GET /me`."""
    client.user_id, client.device_id = "u_bot", "d_bot"
    return client


def query(conn: ServerConnection) -> dict[str, str]:
    assert conn.request is not None
    return {k: v[0] for k, v in parse_qs(urlsplit(conn.request.path).query).items()}


async def send(conn: ServerConnection, frame: dict[str, Any]) -> None:
    await conn.send(orjson.dumps(frame).decode())


async def frames(conn: ServerConnection) -> AsyncIterator[dict[str, Any]]:
    async for raw in conn:
        yield orjson.loads(raw)


class FakeServer:
    def __init__(self, server: Server) -> None:
        self.server = server
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def client(self, token: str = "tok") -> Client:
        return identified(Client(self.url, access_token=token, timeout=2.0))


async def start(handler: Handler, **kwargs: Any) -> Server:
    return await serve(handler, "127.0.0.1", 0, **kwargs)


def message(seq: int, conversation_id: str = "c_1") -> dict[str, Any]:
    return {
        "type": "message",
        "conversation_id": conversation_id,
        "seq": seq,
        "message_id": f"m_{seq}",
        "body": {"text": f"#{seq}"},
        "token": f"t{seq}",
    }


async def test_send_text_waits_for_its_own_ack_and_events_flow() -> None:
    async def handler(conn: ServerConnection) -> None:
        assert conn.request is not None
        assert conn.request.headers["authorization"] == "Bearer tok"
        assert "tok" not in conn.request.path  # never in the URL: proxies log URLs
        async for frame in frames(conn):
            if frame["type"] == "send":
                txn = frame["client_txn_id"]
                if frame["body"]["text"] == "too long":
                    error = {"code": "too_large", "message": "text over 16384 bytes"}
                    await send(conn, {"type": "error", "client_txn_id": txn, "error": error})
                    continue
                seq = int(frame["body"]["text"])
                # an unrelated ack and the pushed event come first: routing must not mix them up
                await send(conn, {"type": "ack", "client_txn_id": "other", "message_id": "x"})
                await send(conn, message(seq))
                ack = {"client_txn_id": txn, "message_id": f"m_{seq}", "seq": seq, "sent_at": 5}
                await send(conn, {"type": "ack", **ack})
            elif frame["type"] == "ping":
                await send(conn, {"type": "pong"})
            elif frame["type"] == "read":
                error = {"code": "bad_request", "message": "seq beyond last_seq"}
                await send(conn, {"type": "error", "client_txn_id": None, "error": error})
                await send(conn, {"type": "read", "conversation_id": "c_1", "user_id": "u_1"})

    async with await start(handler) as server, FakeServer(server).client() as client:
        async with client.websocket() as ws:
            first, second = await asyncio.gather(
                ws.send_text("c_1", "1", client_txn_id="a"), ws.send_text("c_1", "2")
            )
            assert (first.message_id, first.seq) == ("m_1", 1)
            assert (second.message_id, second.seq) == ("m_2", 2)
            with pytest.raises(QunliaoError) as caught:
                await ws.send_text("c_1", "too long")
            assert (caught.value.status, caught.value.code) == (413, "too_large")
            await ws.ping()
            await ws.read("c_1", 99)
            received = [await asyncio.wait_for(ws.next_event(), 2) for _ in range(3)]
            assert sorted(e["seq"] for e in received[:2]) == [1, 2]
            assert received[2]["type"] == "read"  # the error frame was not yielded
            assert [e.code for e in ws.unmatched_errors] == ["bad_request"]
            assert ws.last_token in ("t1", "t2")


async def test_pending_send_fails_when_the_socket_drops() -> None:
    async def handler(conn: ServerConnection) -> None:
        async for _ in frames(conn):
            conn.transport.abort()  # like kill -9: no close frame

    async with await start(handler) as server, FakeServer(server).client() as client:
        async with client.websocket() as ws:
            with pytest.raises(QunliaoConnectionError):
                await ws.send_text("c_1", "lost?", client_txn_id="t")
            assert isinstance(await ws.wait_closed(), QunliaoConnectionError)
            with pytest.raises(QunliaoConnectionError):
                await ws.send_text("c_1", "after", client_txn_id="t")
            with pytest.raises(QunliaoConnectionError):
                async for _ in ws.events():
                    pass


async def test_send_without_ack_times_out_as_connection_error() -> None:
    async def handler(conn: ServerConnection) -> None:
        async for _ in frames(conn):
            pass

    async with await start(handler) as server, FakeServer(server).client() as client:
        async with client.websocket() as ws:
            with pytest.raises(QunliaoConnectionError):
                await ws.send_text("c_1", "x", ack_timeout=0.2)


async def test_close_4401_raises_unauthorized() -> None:
    async def handler(conn: ServerConnection) -> None:
        await send(conn, message(1))
        await conn.close(4401, "token revoked")

    async with await start(handler) as server, FakeServer(server).client() as client:
        async with client.websocket() as ws:
            got = []
            with pytest.raises(QunliaoError) as caught:
                async for event in ws.events():
                    got.append(event["seq"])
            assert got == [1]
            assert (caught.value.status, caught.value.code) == (401, "unauthorized")
            assert ws.close_code == 4401
        with pytest.raises(QunliaoError) as from_listen:
            async for _ in client.listen():
                pass
        assert from_listen.value.status == 401


async def test_refused_handshake_raises_with_the_status() -> None:
    def refuse(conn: ServerConnection, request: Request) -> Response:
        body = b'{"error": {"code": "unauthorized", "message": "bad token"}}'
        headers = Headers([("Content-Type", "application/json")])
        return Response(401, "Unauthorized", headers, body)

    async def handler(conn: ServerConnection) -> None:
        raise AssertionError("handshake should have been refused")

    async with await start(handler, process_request=refuse) as server:
        async with FakeServer(server).client() as client:
            with pytest.raises(QunliaoError) as caught:
                async with client.websocket():
                    pass
            assert (caught.value.status, caught.value.code) == (401, "unauthorized")
            assert caught.value.message == "bad token"
            with pytest.raises(QunliaoError):
                async for _ in client.listen():
                    pass


async def test_unreachable_server_is_a_connection_error() -> None:
    async with Client("http://127.0.0.1:1", access_token="t", timeout=1.0) as client:
        with pytest.raises(QunliaoConnectionError):
            async with client.websocket():
                pass


async def test_listen_reconnects_resumes_and_drops_duplicates() -> None:
    """The fake server plays a stream of 12 events, breaking the socket every few of them.

    On each reconnect it starts from the `since` the client asked for — but one step too early
    (repeating an event) to prove the dedupe safety net — and once sends no `since` replay.
    """
    stream = [message(seq) for seq in range(1, 13)]
    sinces: list[str | None] = []
    connects = 0

    async def handler(conn: ServerConnection) -> None:
        nonlocal connects
        connects += 1
        since = query(conn).get("since")
        sinces.append(since)
        start_at = 0 if since is None else int(since[1:]) - 1  # replays one seen event
        batch = stream[start_at : start_at + 4]
        for event in batch:
            await send(conn, event)
        if since is not None:
            await send(conn, {"type": "synced", "next_token": batch[-1]["token"]})
        if connects == 2:
            await conn.close(1012, "restarting")
        else:
            conn.transport.abort()

    fast = RetryPolicy(initial_delay=0.01, max_delay=0.05)
    async with await start(handler) as server, FakeServer(server).client() as client:
        got: list[int] = []
        async with aclosing(client.listen(reconnect=fast)) as events:
            async for event in events:
                got.append(event["seq"])
                if len(got) == len(stream):
                    break
    assert got == list(range(1, 13))
    assert sinces[0] is None
    assert sinces[1] == "t4"
    assert all(s is not None for s in sinces[1:])


async def test_listen_without_dedupe_shows_server_repeats() -> None:
    async def handler(conn: ServerConnection) -> None:
        await send(conn, message(1))
        await send(conn, message(1))
        await send(conn, message(2))
        await conn.wait_closed()

    async with await start(handler) as server, FakeServer(server).client() as client:
        got = []
        async with aclosing(client.listen(dedupe=False)) as events:
            async for event in events:
                got.append(event["seq"])
                if len(got) == 3:
                    break
    assert got == [1, 1, 2]


async def test_listen_keeps_trying_while_the_server_is_down() -> None:
    """No server at first: listen must back off and connect once one appears on the port."""
    probe = await start(lambda conn: conn.wait_closed())
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()

    async def handler(conn: ServerConnection) -> None:
        await send(conn, message(1))
        await conn.wait_closed()

    async def later() -> Server:
        await asyncio.sleep(0.3)
        return await serve(handler, "127.0.0.1", port)

    fast = RetryPolicy(initial_delay=0.02, max_delay=0.1)
    client = identified(Client(f"http://127.0.0.1:{port}", access_token="t", timeout=1.0))
    async with client:
        starting = asyncio.create_task(later())
        events = client.listen(reconnect=fast)
        first = await asyncio.wait_for(anext(events), 5)
        await events.aclose()
        server = await starting
        server.close()
        await server.wait_closed()
    assert first["seq"] == 1


@pytest.mark.parametrize(
    "code,reason,status,kind",
    [
        (4401, "invalid or revoked token", 401, QunliaoError),
        (4400, "invalid since token", 400, QunliaoError),
        (4403, "", 403, QunliaoError),
        (1012, "server restarting", None, QunliaoConnectionError),
        (1013, "too many connections", None, QunliaoConnectionError),
        (4008, "since=tok42", None, QunliaoConnectionError),
        (None, None, None, QunliaoConnectionError),
    ],
)
def test_close_codes_map_to_errors(
    code: int | None, reason: str | None, status: int | None, kind: type[QunliaoError]
) -> None:
    error = close_error(code, reason)
    assert type(error) is kind and error.status == status
    if isinstance(error, QunliaoConnectionError):
        assert error.close_code == code
        assert error.resume_token == ("tok42" if code == 4008 else None)


async def test_listen_stops_on_a_bad_since_and_resumes_where_a_slow_close_says() -> None:
    sinces: list[str | None] = []

    async def handler(conn: ServerConnection) -> None:
        since = query(conn).get("since")
        sinces.append(since)
        if since is None:
            await conn.close(4008, "since=t5")  # too slow before any event reached us
        elif since == "t5":
            await send(conn, message(6))
            await conn.close(4400, "invalid since token")

    fast = RetryPolicy(initial_delay=0.01, max_delay=0.05)
    async with await start(handler) as server, FakeServer(server).client() as client:
        got = []
        with pytest.raises(QunliaoError) as caught:
            async for event in client.listen(reconnect=fast):
                got.append(event["seq"])
    assert (caught.value.status, caught.value.code) == (400, "bad_request")
    assert sinces == [None, "t5"] and got == [6]
