"""Chat over real sockets: HTTP and WebSocket, both ways, several devices, resume, revocation."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from qunliao.sdk import Client, QunliaoError, WebSocketConnection, new_txn_id

from .helpers import PASSWORD, MakeUser, ServerProcess, next_event_of

pytestmark = pytest.mark.e2e


def is_message(message_id: str) -> Any:
    return lambda event: event.get("type") == "message" and event.get("message_id") == message_id


async def test_http_chat_both_ways(make_user: MakeUser) -> None:
    alice, bob = await make_user("alice", "爱丽丝"), await make_user("bob")
    direct = await alice.client.create_direct(bob.user_id)
    assert await bob.client.create_direct(alice.user_id) == direct  # one per pair

    hello = await alice.client.send_text(direct, "你好, bob")
    reply = await bob.client.send_text(direct, "hi alice", reply_to=hello.message_id)
    assert reply.seq > hello.seq

    for client in (alice.client, bob.client):
        newest_first = await client.history(direct)
        texts = [m["body"]["text"] for m in newest_first if m["msg_type"] == "text"]
        assert texts == ["hi alice", "你好, bob"]
        assert newest_first[0]["reply_to"] == hello.message_id
        assert newest_first[1]["sender_id"] == alice.user_id

    (conv,) = [c for c in await alice.client.conversations() if c["conversation_id"] == direct]
    assert conv["kind"] == "direct" and conv["last_seq"] >= reply.seq
    assert conv["unread_count"] == 1
    await alice.client.mark_read(direct, reply.seq)
    (conv,) = [c for c in await alice.client.conversations() if c["conversation_id"] == direct]
    assert conv["unread_count"] == 0
    assert await bob.client.receipts(direct, reply.seq) == {
        "read_by": [alice.user_id],
        "unread_by": [],
    }


async def test_http_send_is_idempotent(make_user: MakeUser) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    direct = await alice.client.create_direct(bob.user_id)
    txn = new_txn_id()
    first = await alice.client.send_text(direct, "once", client_txn_id=txn)
    again = await alice.client.send_text(direct, "once", client_txn_id=txn)
    assert again == first and again.duplicate and not first.duplicate
    with pytest.raises(QunliaoError) as caught:
        await alice.client.send_text(direct, "other body", client_txn_id=txn)
    assert (caught.value.status, caught.value.code) == (409, "conflict")
    # the txn id is per device: bob using the same one is a different send
    other = await bob.client.send_text(direct, "once", client_txn_id=txn)
    assert other.message_id != first.message_id
    texts = [m["body"]["text"] for m in await alice.client.history(direct)]
    assert texts == ["once", "once"]


async def test_concurrent_repeats_of_one_send_store_one_message(
    server: ServerProcess, make_user: MakeUser
) -> None:
    """A client that gives up waiting and resends while the first try is still in flight, on
    two sockets and over HTTP at once: one message, one answer for all."""
    alice, bob = await make_user("alice"), await make_user("bob")
    direct = await alice.client.create_direct(bob.user_id)
    async with alice.client.websocket() as ws1, alice.client.websocket() as ws2:
        for round_ in range(5):
            txn, text = new_txn_id(), f"race {round_}"
            results = await asyncio.gather(
                *(ws.send_text(direct, text, client_txn_id=txn) for ws in (ws1, ws2) * 3),
                *(alice.client.send_text(direct, text, client_txn_id=txn) for _ in range(4)),
            )
            assert len({(r.message_id, r.seq, r.sent_at) for r in results}) == 1, results
    texts = [m["body"]["text"] for m in await alice.client.all_history(direct)]
    assert texts == [f"race {i}" for i in range(5)]


async def test_sdk_rides_out_real_rate_limiting(tmp_path: Path) -> None:
    """Past its burst the server answers 429 + Retry-After (WebSocket: a rate_limited error
    frame); send_text waits and retries with the same txn ids: every message lands once."""
    limits = {"QUNLIAO_RATE_LIMIT_PER_S": "20", "QUNLIAO_RATE_LIMIT_BURST": "10"}
    server = ServerProcess(f"sqlite:///{tmp_path / 'limited.db'}", tmp_path, env=limits)
    await server.astart()
    try:
        async with Client(server.url) as alice:
            await alice.register("alice_rl", PASSWORD, "Alice")
            await alice.login("alice_rl", PASSWORD)
            notes = await alice.create_direct(str(alice.user_id))
            async with alice.websocket() as ws:
                answers = await asyncio.gather(
                    *(ws.send_text(notes, f"w{i}") for i in range(15)), return_exceptions=True
                )
            limited = [a for a in answers if isinstance(a, QunliaoError)]
            assert limited, "15 sends at once should pass a burst of 10"
            assert all(e.code == "rate_limited" and e.status == 429 for e in limited)
            results = await asyncio.gather(*(alice.send_text(notes, f"n{i}") for i in range(15)))
            assert any(r.attempts > 1 for r in results), "expected 429s and retries"
            texts = Counter(m["body"]["text"] for m in await alice.all_history(notes))
            assert set(texts.values()) == {1}
            assert len(texts) == 15 + len(answers) - len(limited)
    finally:
        server.stop()


async def test_errors_have_the_one_shape(make_user: MakeUser) -> None:
    alice, bob, eve = await make_user("alice"), await make_user("bob"), await make_user("eve")
    direct = await alice.client.create_direct(bob.user_id)
    for call in (
        eve.client.send_text(direct, "let me in"),
        eve.client.history(direct),
        eve.client.receipts(direct, 1),
    ):
        with pytest.raises(QunliaoError) as caught:
            await call
        assert (caught.value.status, caught.value.code) == (403, "forbidden")
    with pytest.raises(QunliaoError) as too_long:
        await alice.client.send_text(direct, "x" * 16_385)
    assert (too_long.value.status, too_long.value.code) == (413, "too_large")
    with pytest.raises(QunliaoError) as bad_limit:
        await alice.client.history(direct, limit=0)
    assert (bad_limit.value.status, bad_limit.value.code) == (400, "bad_request")
    anonymous = Client(alice.client.base_url)
    async with anonymous:
        with pytest.raises(QunliaoError) as unauthorized:
            await anonymous.conversations()
    assert (unauthorized.value.status, unauthorized.value.code) == (401, "unauthorized")


async def test_websocket_chat_both_ways(make_user: MakeUser) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    group = await alice.client.create_group([bob.user_id], title="两个人")
    async with alice.client.websocket() as alice_ws, bob.client.websocket() as bob_ws:
        await alice_ws.ping()
        await bob_ws.ping()  # both sockets are accepted before anything is sent
        sent = await alice_ws.send_text(group, "over the socket")
        for ws in (bob_ws, alice_ws):  # the sending device gets it too
            event = await next_event_of(ws, is_message(sent.message_id))
            assert (event["seq"], event["sender_id"]) == (sent.seq, alice.user_id)
            assert event["conversation_id"] == group
            assert event["body"] == {"text": "over the socket"}

        answer = await bob_ws.send_text(group, "and back", mentions=[alice.user_id])
        event = await next_event_of(alice_ws, is_message(answer.message_id))
        assert event["mentions"] == [alice.user_id]

        over_http = await bob.client.send_text(group, "HTTP shows up on sockets")
        await next_event_of(alice_ws, is_message(over_http.message_id))

        # one idempotency space for HTTP and WebSocket, per device
        txn = new_txn_id()
        by_socket = await alice_ws.send_text(group, "shared txn", client_txn_id=txn)
        by_http = await alice.client.send_text(group, "shared txn", client_txn_id=txn)
        assert by_http == by_socket and by_http.duplicate
        assert await alice_ws.send_text(group, "shared txn", client_txn_id=txn) == by_socket

        with pytest.raises(QunliaoError) as caught:
            await alice_ws.send_text(group, "x" * 16_385)
        assert caught.value.code == "too_large"
        await alice_ws.send_frame({"type": "nonsense"})
        await alice_ws.ping()  # a malformed frame leaves the socket open
        assert not alice_ws.closed

    history = await alice.client.all_history(group)
    texts = [m["body"]["text"] for m in history if m["msg_type"] == "text"]
    assert texts == ["over the socket", "and back", "HTTP shows up on sockets", "shared txn"]


async def test_multi_device_delivery(server: ServerProcess, make_user: MakeUser) -> None:
    """A message from device A of user 1 reaches device B of user 1 and user 2's socket."""
    alice, bob = await make_user("alice"), await make_user("bob")
    direct = await alice.client.create_direct(bob.user_id)
    alice_b = await alice.device(server.url, "alice-phone")
    async with alice_b:
        assert alice_b.device_id != alice.client.device_id
        async with (
            alice.client.websocket() as ws_a,
            alice_b.websocket() as ws_b,
            bob.client.websocket() as ws_bob,
        ):
            for ws in (ws_a, ws_b, ws_bob):
                await ws.ping()
            sent = await ws_a.send_text(direct, "from my laptop")
            for ws in (ws_a, ws_b, ws_bob):
                event = await next_event_of(ws, is_message(sent.message_id))
                assert event["seq"] == sent.seq

            from_phone = await alice_b.send_text(direct, "from my phone")
            for ws in (ws_a, ws_b, ws_bob):
                await next_event_of(ws, is_message(from_phone.message_id))

            # typing is state pushed to the other members only
            await ws_a.typing(direct, True)
            typing = await next_event_of(ws_bob, lambda e: e.get("type") == "typing")
            assert (typing["user_id"], typing["typing"]) == (alice.user_id, True)

        # the second device also sees both through sync, exactly once each
        events = await sync_all(alice_b)
        ids = [e["message_id"] for e in events if e.get("type") == "message"]
        assert ids == [sent.message_id, from_phone.message_id]


async def sync_all(client: Client, since: str | None = None) -> list[dict[str, Any]]:
    """Follow next_token until an empty page; every event, in order."""
    events: list[dict[str, Any]] = []
    token = since
    while True:
        page = await client.sync(token, limit=1000)
        if not page.events:
            return events
        events.extend(page.events)
        token = page.next_token


async def test_resume_after_disconnect_has_no_gaps_or_repeats(make_user: MakeUser) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    group = await alice.client.create_group([bob.user_id])
    async with bob.client.websocket() as ws:
        await ws.ping()
        first = await alice.client.send_text(group, "before the tunnel")
        await next_event_of(ws, is_message(first.message_id))
        token = ws.last_token
    assert token is not None, "pushed events should carry a resume token"

    missed = [await alice.client.send_text(group, f"missed {i}") for i in range(5)]

    async with bob.client.websocket(since=token) as ws:
        replayed: list[dict[str, Any]] = []
        while True:
            event = await asyncio.wait_for(ws.next_event(), 10)
            if event["type"] == "synced":
                break
            replayed.append(event)
        live = await alice.client.send_text(group, "live again")
        event = await next_event_of(ws, lambda e: e.get("type") == "message")
        assert event["message_id"] == live.message_id
    stored = [e for e in replayed if "seq" in e]
    assert [e["message_id"] for e in stored] == [m.message_id for m in missed]
    seqs = [e["seq"] for e in stored]
    assert seqs == sorted(set(seqs))

    # a resume frame does the same as ?since=
    async with bob.client.websocket() as ws:
        await ws.resume(token)
        again = []
        while (event := await asyncio.wait_for(ws.next_event(), 10))["type"] != "synced":
            again.append(event.get("message_id"))
    assert again[: len(missed) + 1] == [m.message_id for m in [*missed, live]]

    # and the HTTP sync from that token agrees
    synced = [e for e in await sync_all(bob.client, token) if e.get("conversation_id") == group]
    assert [e["message_id"] for e in synced] == [m.message_id for m in [*missed, live]]


async def test_revoked_token_closes_the_socket_4401(
    server: ServerProcess, make_user: MakeUser
) -> None:
    alice = await make_user("alice")
    phone = await alice.device(server.url, "phone")
    async with phone, phone.websocket() as phone_ws, alice.client.websocket() as laptop_ws:
        await phone_ws.ping()
        await laptop_ws.ping()
        token = alice.client.access_token
        await alice.client.logout()
        why = await asyncio.wait_for(laptop_ws.wait_closed(), 10)
        assert isinstance(why, QunliaoError) and why.status == 401
        assert laptop_ws.close_code == 4401
        assert not phone_ws.closed  # only that device

        with pytest.raises(QunliaoError) as enter_refused:
            async with Client(server.url, access_token=token):
                pass  # entering asks the server whose token it is: a revoked one fails there
        assert enter_refused.value.status == 401
        revoked = Client(server.url, access_token=token)  # not entered: each call on its own
        try:
            with pytest.raises(QunliaoError) as http_refused:
                await revoked.me()
            assert http_refused.value.status == 401
            with pytest.raises(QunliaoError) as ws_refused:
                async with revoked.websocket() as ws:
                    await asyncio.wait_for(ws.next_event(), 10)
            # refused at the handshake (uvicorn turns a close before accept into HTTP 403) or
            # accepted and closed with 4401: both are what docs/api.md allows
            assert ws_refused.value.status in (401, 403)
        finally:
            await revoked.aclose()

        # a since token that is not one: 4400, which listen() must not retry forever
        with pytest.raises(QunliaoError) as bad_since:
            async with phone.websocket(since="not-a-token") as ws:
                await asyncio.wait_for(ws.next_event(), 10)
        assert (bad_since.value.status, bad_since.value.code) == (400, "bad_request")
        with pytest.raises(QunliaoError):
            await asyncio.wait_for(anext(phone.listen(since="not-a-token")), 10)

        # "log out all other devices" from a fresh login closes the phone's socket too
        laptop = await alice.device(server.url, "laptop again")
        async with laptop:
            await laptop.logout_others()
            why = await asyncio.wait_for(phone_ws.wait_closed(), 10)
            assert isinstance(why, QunliaoError) and why.status == 401
            assert (await laptop.me())["user_id"] == alice.user_id
        with pytest.raises(QunliaoError):
            await phone.me()


async def test_an_ack_means_committed(server: ServerProcess, make_user: MakeUser) -> None:
    """Pipelined WebSocket sends: the moment an ack arrives, the message must be readable by
    anyone over HTTP (ack after commit, never before)."""
    alice, bob = await make_user("alice"), await make_user("bob")
    group = await alice.client.create_group([bob.user_id], "acks")
    missing: list[str] = []

    async def send_then_read(ws: WebSocketConnection, i: int) -> None:
        result = await ws.send_text(group, f"p{i}")
        try:
            stored = await bob.client.message(group, result.message_id)
        except QunliaoError as error:
            missing.append(f"{result.message_id}: {error}")
            return
        assert (stored["seq"], stored["sent_at"]) == (result.seq, result.sent_at)

    async with alice.client.websocket() as ws:
        await asyncio.gather(*(send_then_read(ws, i) for i in range(150)))
    assert not missing, f"acked but not readable: {missing[:5]}"


async def test_group_fan_out_to_many_sockets(make_user: MakeUser) -> None:
    """8 members online, 4 of them pipelining 50 sends each: every socket carries all 200
    messages exactly once, in seq order."""
    users = await asyncio.gather(*(make_user(f"m{i}") for i in range(8)))
    group = await users[0].client.create_group([u.user_id for u in users[1:]], "fan-out")
    sockets = [u.client.websocket() for u in users]
    try:
        for ws in sockets:
            await ws.connect()
            await ws.ping()
        total = 4 * 50

        async def collect(ws: WebSocketConnection) -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = []
            while len(got) < total:
                event = await ws.next_event()
                if event.get("type") == "message" and event.get("conversation_id") == group:
                    got.append(event)
            return got

        listening = [asyncio.create_task(collect(ws)) for ws in sockets]
        sent = await asyncio.gather(
            *(sockets[k].send_text(group, f"{k}-{i}") for k in range(4) for i in range(50))
        )
        streams = await asyncio.wait_for(asyncio.gather(*listening), 30)
    finally:
        for ws in sockets:
            await ws.close()
    expected = sorted(r.message_id for r in sent)
    for stream in streams:
        assert sorted(e["message_id"] for e in stream) == expected
        seqs = [e["seq"] for e in stream]
        assert seqs == sorted(seqs)


async def test_resume_frame_from_a_slow_network(make_user: MakeUser) -> None:
    """docs/api.md: a first frame {"type": "resume", "since"} replays what was missed. On a
    phone the first frame reaches the server a round trip (often 100–300 ms) after the
    accept; it is still the first frame and must still resume."""
    alice, bob = await make_user("alice"), await make_user("bob")
    direct = await alice.client.create_direct(bob.user_id)
    async with bob.client.websocket() as ws:
        await ws.ping()
        first = await alice.client.send_text(direct, "seen")
        await next_event_of(ws, is_message(first.message_id))
        token = ws.last_token
    assert token is not None
    missed = [await alice.client.send_text(direct, f"missed {i}") for i in range(3)]
    async with bob.client.websocket() as ws:
        await asyncio.sleep(0.4)  # the round trip of a slow mobile network
        await ws.resume(token)
        replayed: list[str] = []
        with contextlib.suppress(TimeoutError):
            while len(replayed) < len(missed):
                event = await asyncio.wait_for(ws.next_event(), 3)
                if event.get("type") == "message":
                    replayed.append(event["message_id"])
        errors = [f"{e.code}: {e.message}" for e in ws.unmatched_errors]
    assert replayed == [m.message_id for m in missed], f"no replay; error frames: {errors}"

    # a late resume that would reorder a conversation already pushed live: `conflict`
    async with bob.client.websocket() as ws:
        await asyncio.sleep(0.3)  # live, no first frame yet
        pushed = await alice.client.send_text(direct, "live first")
        await next_event_of(ws, is_message(pushed.message_id))
        await ws.resume(token)
        for _ in range(100):
            if ws.unmatched_errors:
                break
            await asyncio.sleep(0.05)
        assert [e.code for e in ws.unmatched_errors] == ["conflict"]
