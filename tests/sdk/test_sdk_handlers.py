"""The bot side of the SDK without a server: identity from a saved token, handlers, replies,
own messages left out, owned tasks."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import orjson
import pytest

from qunliao.sdk import (
    Client,
    Event,
    Message,
    MessageEdited,
    MessageEvent,
    QunliaoError,
    RetryPolicy,
    Typing,
    UnknownEvent,
    decode_event,
)

BASE = "http://chat.test"
ME = {"user_id": "u_bot", "username": "bot", "display_name": "机器人 Bot", "device_id": "d_bot"}


def message(sender: str, text: str = "你好 hello", seq: int = 1) -> dict[str, Any]:
    return {
        "type": "message",
        "conversation_id": "c_1",
        "seq": seq,
        "message_id": f"m_{seq}",
        "sender_id": sender,
        "msg_type": "text",
        "body": {"text": text},
        "sent_at": 1,
        "token": f"t{seq}",
    }


class FakeServer:
    """`GET /me` and sends, over httpx.MockTransport."""

    def __init__(self, me_status: int = 200) -> None:
        self.me_status = me_status
        self.requests: list[httpx.Request] = []
        self.sent: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/api/v1/me":
            if self.me_status != 200:
                error = {"code": "unauthorized", "message": "invalid or revoked token"}
                return httpx.Response(self.me_status, json={"error": error})
            return httpx.Response(200, json=ME)
        if request.url.path.endswith("/messages") and request.method == "POST":
            self.sent.append(orjson.loads(request.content))
            seq = 100 + len(self.sent)
            return httpx.Response(201, json={"message_id": f"m_{seq}", "seq": seq, "sent_at": 2})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})

    def client(self, **kwargs: Any) -> Client:
        return Client(BASE, access_token="tok", transport=httpx.MockTransport(self), **kwargs)


async def test_a_client_from_a_saved_token_knows_who_it_is_after_entering() -> None:
    server = FakeServer()
    async with server.client() as client:
        assert (client.user_id, client.device_id) == ("u_bot", "d_bot")
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer tok"]


async def test_a_revoked_token_fails_on_entering() -> None:
    client = FakeServer(me_status=401).client()
    with pytest.raises(QunliaoError) as caught:
        async with client:
            pass
    assert caught.value.status == 401
    assert client._http.is_closed  # nothing left open behind the error


async def test_an_overloaded_server_is_asked_again_before_listening() -> None:
    server = FakeServer(me_status=503)
    fast = RetryPolicy(total=0.0)
    async with server.client(retry=fast) as client:
        assert client.user_id is None  # not fatal on entering: the server may come back
        server.me_status = 200
        await client.identify()
        assert (client.user_id, client.device_id) == ("u_bot", "d_bot")
        await client.identify()  # known now: no second request
    assert len(server.requests) == 2


async def test_without_a_token_entering_asks_nothing() -> None:
    server = FakeServer()
    async with Client(BASE, transport=httpx.MockTransport(server)) as client:
        assert client.user_id is None
    assert server.requests == []


async def test_handlers_get_their_types_in_order_and_never_the_bots_own_messages() -> None:
    server = FakeServer()
    seen: list[tuple[str, str]] = []
    async with server.client() as client:

        @client.on(MessageEvent)
        async def on_message(event: MessageEvent) -> None:
            seen.append(("message", event.text or ""))

        @client.on(MessageEvent, include_own=True)
        async def audit(event: MessageEvent) -> None:
            seen.append(("audit", event.sender_id))

        @client.on(Event)
        async def everything(event: Event) -> None:
            seen.append(("any", type(event).__name__))

        typing = {"type": "typing", "conversation_id": "c_1", "user_id": "u_x", "typing": True}
        for frame in (message("u_alice"), message("u_bot", seq=2), typing, {"type": "future"}):
            await client.dispatch(decode_event(frame, client=client))
    assert seen == [
        ("message", "你好 hello"),
        ("audit", "u_alice"),
        ("any", "Message"),
        ("audit", "u_bot"),  # asked for its own messages; the others were spared
        ("any", "Typing"),
        ("any", "UnknownEvent"),
    ]


async def test_own_edits_are_left_out_too() -> None:
    edit = {
        "type": "message.edited",
        "conversation_id": "c_1",
        "seq": 3,
        "message_id": "m_1",
        "body": {"text": "改了 edited"},
        "edited_at": 5,
        "sender_id": "u_bot",
    }
    async with FakeServer().client() as client:
        calls: list[Event] = []

        @client.on(MessageEdited, Typing)
        async def handler(event: Event) -> None:
            calls.append(event)

        assert await client.dispatch(decode_event(edit, client=client)) == 0
        assert await client.dispatch(decode_event({**edit, "sender_id": "u_x"})) == 1


async def test_reply_answers_in_the_conversation_as_a_reply() -> None:
    server = FakeServer()
    async with server.client() as client:

        @client.on(MessageEvent)
        async def echo(event: MessageEvent) -> None:
            await event.reply(f"echo: {event.text}")

        await client.dispatch(decode_event(message("u_alice", "早上好"), client=client))
    (sent,) = server.sent
    assert sent["body"] == {"text": "echo: 早上好"} and sent["reply_to"] == "m_1"
    assert sent["client_txn_id"]


async def test_reply_needs_a_client() -> None:
    event = decode_event(message("u_alice"))
    assert isinstance(event, Message) and event.client is None
    with pytest.raises(RuntimeError, match="no client"):
        await event.reply("hi")


def test_the_client_is_not_part_of_an_events_identity() -> None:
    plain = decode_event(message("u_alice"))
    bound = decode_event(message("u_alice"), client=Client(BASE))
    assert plain == bound and "client" not in repr(bound)
    # a JSON key named "client" cannot smuggle anything into the field
    assert decode_event({**message("u_alice"), "client": "x"}).client is None
    assert MessageEvent is Message


def test_text_is_the_text_of_text_messages_only() -> None:
    assert decode_event(message("u_a", "文字")).text == "文字"  # type: ignore[attr-defined]
    image = {**message("u_a"), "msg_type": "image", "body": {"url": "x"}}
    assert decode_event(image).text is None  # type: ignore[attr-defined]
    recalled = {**message("u_a"), "body": None, "recalled_at": 3}
    assert decode_event(recalled).text is None  # type: ignore[attr-defined]


async def test_a_failing_handler_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []
    async with FakeServer().client() as client:

        @client.on(MessageEvent)
        async def broken(event: MessageEvent) -> None:
            raise ValueError("boom")

        @client.on(MessageEvent)
        async def fine(event: MessageEvent) -> None:
            ran.append(event.message_id)

        with caplog.at_level(logging.ERROR, logger="qunliao_sdk"):
            assert await client.dispatch(decode_event(message("u_alice"), client=client)) == 2
    assert ran == ["m_1"]
    assert "broken" in caplog.text and "boom" in caplog.text


async def test_on_takes_event_classes_only() -> None:
    async with FakeServer().client() as client:
        with pytest.raises(TypeError):
            client.on("message")  # type: ignore[arg-type]
        with pytest.raises(TypeError):

            @client.on(dict)  # type: ignore[type-var]
            async def nope(event: Any) -> None:
                pass


async def test_spawned_tasks_belong_to_the_client_and_end_with_it() -> None:
    started = asyncio.Event()
    async with FakeServer().client() as client:

        async def timer() -> None:
            started.set()
            await asyncio.sleep(3600)

        task = client.spawn(timer(), name="timer")
        await started.wait()
        assert not task.done()
    assert task.cancelled()


async def test_unknown_events_reach_catch_all_handlers() -> None:
    got: list[UnknownEvent] = []
    async with FakeServer().client() as client:

        @client.on(UnknownEvent)
        async def unknown(event: UnknownEvent) -> None:
            got.append(event)

        await client.dispatch(decode_event({"type": "poll.closed", "conversation_id": "c_1"}))
    assert [event.type for event in got] == ["poll.closed"]
