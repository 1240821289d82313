"""qunliao.sdk over HTTP, against httpx.MockTransport: retries, error mapping, request shapes."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from qunliao.sdk import Client, QunliaoConnectionError, QunliaoError, RetryPolicy, SendResult
from qunliao_sdk._http import parse_retry_after

BASE = "http://chat.test"


class FakeTime:
    """A clock whose sleeps advance it instantly, so retry schedules run without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def policy(fake: FakeTime, total: float = 30.0) -> RetryPolicy:
    return RetryPolicy(total=total, jitter=lambda: 1.0, sleep=fake.sleep, clock=fake.clock)


def error_response(status: int, code: str, message: str = "nope", **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": message}}
    return httpx.Response(status, json=body, headers=headers)


def make_client(
    handler: Callable[[httpx.Request], httpx.Response], fake: FakeTime | None = None
) -> Client:
    client = Client(
        BASE,
        access_token="tok",
        transport=httpx.MockTransport(handler),
        retry=policy(fake or FakeTime()),
    )
    client.user_id, client.device_id = "u_me", "d_me"  # as if known: no `GET /me` on enter
    return client


def sent_json(request: httpx.Request) -> Any:
    return orjson.loads(request.content)


OK_SEND = {"message_id": "m_1", "seq": 7, "sent_at": 1_700_000_000_000}


async def test_login_stores_token_and_uses_it() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/v1/sessions":
            return httpx.Response(
                201, json={"access_token": "secret", "user_id": "u_1", "device_id": "d_1"}
            )
        return httpx.Response(200, json={"user_id": "u_1", "username": "ann"})

    async with Client(BASE, transport=httpx.MockTransport(handler)) as client:
        session = await client.login("ann", "password1")
        assert session.access_token == "secret"
        assert (client.user_id, client.device_id) == ("u_1", "d_1")
        assert (await client.me())["username"] == "ann"
    login, me = seen
    assert sent_json(login) == {
        "username": "ann",
        "password": "password1",
        "device_name": "qunliao-sdk",
    }
    assert "authorization" not in login.headers
    assert me.headers["authorization"] == "Bearer secret"


async def test_register_returns_user_id() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST" and request.url.path == "/api/v1/accounts"
        assert sent_json(request) == {
            "username": "ann",
            "password": "pw12345678",
            "display_name": "安",
        }
        return httpx.Response(201, json={"user_id": "u_9"})

    async with make_client(handler) as client:
        assert await client.register("ann", "pw12345678", "安") == "u_9"


async def test_send_text_makes_a_txn_id_and_body() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/conversations/c_1/messages"
        bodies.append(sent_json(request))
        return httpx.Response(201, json=OK_SEND)

    async with make_client(handler) as client:
        result = await client.send_text("c_1", "你好", reply_to="m_0", mentions=["u_2"])
        await client.send_text("c_1", "again")
    assert result == SendResult("m_1", 7, 1_700_000_000_000)
    assert result.attempts == 1 and not result.duplicate
    first, second = bodies
    assert first["msg_type"] == "text" and first["body"] == {"text": "你好"}
    assert first["reply_to"] == "m_0" and first["mentions"] == ["u_2"]
    assert len(first["client_txn_id"]) == 28 and int(first["client_txn_id"], 16) >= 0
    assert first["client_txn_id"] != second["client_txn_id"]
    assert "reply_to" not in second and "mentions" not in second


@pytest.mark.parametrize(
    "failure",
    [
        lambda request: error_response(503, "unavailable"),
        lambda request: httpx.Response(500, text="Internal Server Error"),
        lambda request: httpx.Response(502, text="<html>bad gateway</html>"),
    ],
    ids=["503", "500", "502-not-json"],
)
async def test_send_retries_server_errors_with_the_same_txn_id(
    failure: Callable[[httpx.Request], httpx.Response],
) -> None:
    txn_ids: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        txn_ids.append(sent_json(request)["client_txn_id"])
        if len(txn_ids) < 3:
            return failure(request)
        return httpx.Response(200, json=OK_SEND)

    fake = FakeTime()
    async with make_client(handler, fake) as client:
        result = await client.send_text("c_1", "hi")
    assert result.message_id == "m_1"
    assert result.attempts == 3 and result.duplicate
    assert len(set(txn_ids)) == 1 and len(txn_ids) == 3
    assert fake.sleeps == [0.1, 0.2]  # exponential backoff


async def test_send_retries_connection_errors_with_the_given_txn_id() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(sent_json(request)["client_txn_id"])
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        if len(calls) == 2:
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        if len(calls) == 3:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(201, json=OK_SEND)

    async with make_client(handler) as client:
        result = await client.send_text("c_1", "hi", client_txn_id="txn-42")
    assert calls == ["txn-42"] * 4
    assert result.attempts == 4


async def test_send_honours_retry_after_on_429() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return error_response(429, "rate_limited", "slow down", **{"Retry-After": "3"})
        return httpx.Response(201, json=OK_SEND)

    fake = FakeTime()
    async with make_client(handler, fake) as client:
        await client.send_text("c_1", "hi")
    assert fake.sleeps == [3.0]


async def test_send_gives_up_after_the_budget_with_the_last_error() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return error_response(503, "unavailable", f"down {calls}")

    fake = FakeTime()
    client = Client(
        BASE,
        access_token="tok",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(
            total=10.0, max_delay=2.0, jitter=lambda: 1.0, sleep=fake.sleep, clock=fake.clock
        ),
    )
    async with client:
        with pytest.raises(QunliaoError) as caught:
            await client.send_text("c_1", "hi")
    assert caught.value.status == 503 and caught.value.code == "unavailable"
    assert caught.value.message == f"down {calls}"
    assert sum(fake.sleeps) <= 10.0
    assert max(fake.sleeps) == 2.0  # capped
    assert fake.sleeps == sorted(fake.sleeps)


async def test_retry_after_longer_than_the_budget_fails_at_once() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return error_response(429, "rate_limited", **{"Retry-After": "60"})

    fake = FakeTime()
    async with make_client(handler, fake) as client:
        with pytest.raises(QunliaoError) as caught:
            await client.send_text("c_1", "hi")
    assert caught.value.status == 429 and caught.value.retry_after == 60.0
    assert fake.sleeps == []


@pytest.mark.parametrize(
    "status,code", [(400, "bad_request"), (403, "forbidden"), (409, "conflict"), (413, "too_large")]
)
async def test_client_errors_are_not_retried(status: int, code: str) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return error_response(status, code, "told you")

    async with make_client(handler) as client:
        with pytest.raises(QunliaoError) as caught:
            await client.send_text("c_1", "hi")
    assert calls == 1
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        status,
        code,
        "told you",
    )
    assert caught.value.retry_after is None


async def test_errors_without_the_shape_get_a_code_from_the_status() -> None:
    answers = iter(
        [
            httpx.Response(422, json={"detail": [{"loc": ["body"]}]}),
            httpx.Response(404, text="Not Found"),
            httpx.Response(401),
        ]
    )
    async with make_client(lambda request: next(answers)) as client:
        codes = []
        for _ in range(3):
            with pytest.raises(QunliaoError) as caught:
                await client.me()
            codes.append((caught.value.status, caught.value.code))
    assert codes == [(422, "bad_request"), (404, "not_found"), (401, "unauthorized")]


async def test_other_calls_do_not_retry_by_default() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    async with make_client(handler) as client:
        with pytest.raises(QunliaoConnectionError) as caught:
            await client.conversations()
        assert caught.value.status is None and caught.value.code == "unavailable"
        assert calls == 1
        fake = FakeTime()
        with pytest.raises(QunliaoConnectionError):
            await client.request("GET", "/api/v1/me", retry=policy(fake, total=1.0))
        assert calls > 2


async def test_request_shapes() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path.endswith("/messages"):
            return httpx.Response(200, json={"messages": [{"seq": 3}]})
        if path.endswith("/sync"):
            return httpx.Response(200, json={"next_token": "t2", "events": []})
        if path.endswith("/receipts"):
            return httpx.Response(200, json={"read_by": ["u_2"], "unread_by": []})
        if path == "/api/v1/conversations" and request.method == "POST":
            return httpx.Response(201, json={"conversation_id": "c_9"})
        if path.endswith("/members") and request.method == "POST":
            return httpx.Response(200, json={"added": ["u_3"]})
        return httpx.Response(204)

    async with make_client(handler) as client:
        assert await client.history("c/1", before_seq=10, limit=5) == [{"seq": 3}]
        page = await client.sync("t1", timeout_ms=2000)
        assert (page.next_token, page.events) == ("t2", [])
        await client.sync()
        await client.mark_read("c_1", 4)
        assert (await client.receipts("c_1", 4))["read_by"] == ["u_2"]
        assert await client.create_group(["u_2"], title="team") == "c_9"
        assert await client.create_direct("u_2") == "c_9"
        assert await client.add_members("c_9", ["u_3"]) == ["u_3"]
        await client.remove_member("c_9", "u_3")
        await client.logout()
        assert client.access_token is None

    history, sync1, sync2, read, receipts, group, direct, add, remove, logout = seen
    assert history.url.raw_path == b"/api/v1/conversations/c%2F1/messages?before_seq=10&limit=5"
    assert dict(sync1.url.params) == {"since": "t1", "timeout_ms": "2000", "limit": "100"}
    assert dict(sync2.url.params) == {"timeout_ms": "0", "limit": "100"}
    assert (read.method, sent_json(read)) == ("POST", {"seq": 4})
    assert receipts.url.params["seq"] == "4"
    assert sent_json(group) == {"kind": "group", "member_ids": ["u_2"], "title": "team"}
    assert sent_json(direct) == {"kind": "direct", "member_ids": ["u_2"]}
    assert sent_json(add) == {"user_ids": ["u_3"]}
    assert (remove.method, remove.url.path) == ("DELETE", "/api/v1/conversations/c_9/members/u_3")
    assert (logout.method, logout.url.path) == ("DELETE", "/api/v1/sessions/current")


async def test_sync_waits_longer_than_its_long_poll() -> None:
    timeouts: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"]["read"])
        return httpx.Response(200, json={"next_token": "t", "events": []})

    async with make_client(handler) as client:
        await client.sync(timeout_ms=25_000)
    assert timeouts == [pytest.approx(35.0)]


def test_websocket_url_carries_no_token() -> None:
    client = Client("https://chat.example/prefix/", access_token="a b+c")
    assert client.websocket_url() == "wss://chat.example/prefix/api/v1/ws"
    plain = Client("http://127.0.0.1:8000", access_token="t")
    assert plain.websocket_url("s1") == "ws://127.0.0.1:8000/api/v1/ws?since=s1"
    with pytest.raises(QunliaoError):
        Client("http://127.0.0.1:8000").websocket()


def test_parse_retry_after() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (parse_retry_after(later) or 0) <= 30


def test_error_frames_map_to_statuses() -> None:
    error = QunliaoError.from_frame({"code": "rate_limited", "message": "slow", "retry_after": 2})
    assert (error.status, error.code, error.message, error.retry_after) == (
        429,
        "rate_limited",
        "slow",
        2.0,
    )
    odd = QunliaoError.from_frame("garbage")
    assert (odd.status, odd.code) == (None, "unexpected")


async def test_group_writes_retry_under_one_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) in (1, 3):
            raise httpx.ReadError("reset", request=request)  # did it happen? unknown
        if request.url.path.endswith("/members"):
            return httpx.Response(200, json={"added": ["u_3"]})
        if request.method == "GET":
            return httpx.Response(200, json={"conversations": []})
        return httpx.Response(201, json={"conversation_id": "c_1"})

    async with make_client(handler) as client:
        assert await client.create_group(["u_2"], "team") == "c_1"
        assert await client.add_members("c_1", ["u_3"], idempotency_key="mine") == ["u_3"]
        await client.request("POST", "/api/v1/conversations/c_1/typing", {"typing": True})
        await client.conversations()
    create1, create2, add1, add2, typing, listing = seen
    key = create1.headers["idempotency-key"]
    assert len(key) == 28 and create2.headers["idempotency-key"] == key
    assert add1.headers["idempotency-key"] == add2.headers["idempotency-key"] == "mine"
    assert "idempotency-key" not in typing.headers  # no retry asked: no key
    assert "idempotency-key" not in listing.headers
