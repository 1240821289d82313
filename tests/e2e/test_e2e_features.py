"""Recall, edit, receipts, membership, friend requests, long-poll and restarts, seen by sockets."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from qunliao.sdk import Client, QunliaoConnectionError, QunliaoError, RetryPolicy

from .helpers import PASSWORD, MakeUser, ServerProcess, next_event_of

pytestmark = pytest.mark.e2e


def of_type(kind: str, **fields: Any) -> Any:
    def match(event: dict[str, Any]) -> bool:
        return event.get("type") == kind and all(event.get(k) == v for k, v in fields.items())

    return match


async def test_recall_and_edit_reach_sockets_and_storage(make_user: MakeUser) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    group = await alice.client.create_group([bob.user_id], "edits")
    async with bob.client.websocket() as ws:
        await ws.ping()
        sent = await alice.client.send_text(group, "typo")
        edited = await alice.client.edit(group, sent.message_id, "fixed")
        assert edited["message_id"] == sent.message_id and edited["seq"] > sent.seq
        event = await next_event_of(ws, of_type("message.edited", message_id=sent.message_id))
        assert event["body"] == {"text": "fixed"} and event["seq"] == edited["seq"]

        secret = await alice.client.send_text(group, "my password is hunter2")
        recalled = await alice.client.recall(group, secret.message_id)
        assert recalled["seq"] > secret.seq
        event = await next_event_of(ws, of_type("message.recalled", message_id=secret.message_id))
        assert event["by"] == alice.user_id

    with pytest.raises(QunliaoError) as caught:
        await bob.client.recall(group, sent.message_id)  # not the sender, not an admin
    assert caught.value.status == 403
    with pytest.raises(QunliaoError) as caught:
        await bob.client.edit(group, sent.message_id, "mine now")
    assert caught.value.status == 403

    by_id = {m["message_id"]: m for m in await bob.client.all_history(group)}
    assert by_id[sent.message_id]["body"] == {"text": "fixed"}
    assert by_id[sent.message_id]["edited_at"] is not None
    assert by_id[secret.message_id]["body"] is None
    assert by_id[secret.message_id]["recalled_at"] is not None
    page = await bob.client.sync(limit=1000)  # from the very start: the body is gone there too
    assert "hunter2" not in str(page.events)


async def test_read_receipts_are_pushed_and_never_move_back(make_user: MakeUser) -> None:
    alice, bob, carol = await make_user("alice"), await make_user("bob"), await make_user("carol")
    group = await alice.client.create_group([bob.user_id, carol.user_id], "receipts")
    first = await alice.client.send_text(group, "one")
    second = await alice.client.send_text(group, "two")
    async with alice.client.websocket() as ws:
        await ws.ping()
        async with bob.client.websocket() as bob_ws:
            await bob_ws.read(group, second.seq)
            event = await next_event_of(ws, of_type("read", user_id=bob.user_id))
            assert event["conversation_id"] == group and event["read_seq"] == second.seq
        await bob.client.mark_read(group, first.seq)  # backwards: ignored
    assert await alice.client.receipts(group, second.seq) == {
        "read_by": [bob.user_id],
        "unread_by": [carol.user_id],
    }
    with pytest.raises(QunliaoError) as caught:
        await bob.client.mark_read(group, second.seq + 1000)
    assert caught.value.status == 400


async def test_a_member_added_later_sees_from_the_join_on(make_user: MakeUser) -> None:
    alice, bob, dan = await make_user("alice"), await make_user("bob"), await make_user("dan")
    group = await alice.client.create_group([bob.user_id], "late joiner")
    await alice.client.send_text(group, "before dan")
    async with dan.client.websocket() as ws:
        await ws.ping()
        assert await alice.client.add_members(group, [dan.user_id]) == [dan.user_id]
        await next_event_of(ws, of_type("members.added", conversation_id=group))
        after = await alice.client.send_text(group, "welcome dan")
        await next_event_of(ws, of_type("message", message_id=after.message_id))
    texts = [m["body"]["text"] for m in await dan.client.all_history(group)]
    assert texts == ["welcome dan"]
    synced = [
        e for e in (await dan.client.sync(limit=1000)).events if e["conversation_id"] == group
    ]
    assert "before dan" not in str(synced)
    with pytest.raises(QunliaoError) as caught:
        await dan.client.add_members(await dan.client.create_direct(alice.user_id), [bob.user_id])
    assert caught.value.status == 400  # a direct conversation has no members to add


async def test_friend_requests_arrive_as_events(make_user: MakeUser) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    async with bob.client.websocket() as bob_ws, alice.client.websocket() as alice_ws:
        await bob_ws.ping()
        await alice_ws.ping()
        request = await alice.client.send_friend_request(bob.user_id, note="我是 alice")
        assert request["status"] == "pending"
        event = await next_event_of(bob_ws, of_type("friend_request.received"))
        assert event["conversation_id"].startswith("i_")
        assert event["request"]["request_id"] == request["request_id"]
        incoming = (await bob.client.friend_requests())["incoming"]
        assert [r["note"] for r in incoming] == ["我是 alice"]
        accepted = await bob.client.accept_friend_request(request["request_id"])
        assert accepted["status"] == "accepted"
        await next_event_of(alice_ws, of_type("friend_request.accepted"))
    assert [c["user_id"] for c in await alice.client.contacts()] == [bob.user_id]
    assert not any(c["conversation_id"].startswith("i_") for c in await bob.client.conversations())


async def test_long_poll_sync_wakes_on_a_message(make_user: MakeUser) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    direct = await alice.client.create_direct(bob.user_id)
    token = None
    while True:
        page = await bob.client.sync(token, limit=1000)
        token = page.next_token
        if not page.events:
            break
    waiting = asyncio.create_task(bob.client.sync(token, timeout_ms=10_000))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    sent = await alice.client.send_text(direct, "wake up")
    page = await asyncio.wait_for(waiting, 10)
    assert [e.get("message_id") for e in page.events] == [sent.message_id]


async def test_listen_survives_a_restart(fresh_backend: tuple[str, Path]) -> None:
    """A graceful stop closes sockets with 1012; listen() reconnects once the server is back."""
    database_url, workdir = fresh_backend
    server = ServerProcess(database_url, workdir)
    await server.astart()
    try:
        async with Client(server.url) as alice:
            await alice.register("alice_r", PASSWORD, "Alice")
            await alice.login("alice_r", PASSWORD)
            notes = await alice.create_direct(str(alice.user_id))
            token = (await alice.sync(limit=1000)).next_token
            fast = RetryPolicy(initial_delay=0.05, max_delay=0.3)
            async with (
                aclosing(alice.listen(since=token, reconnect=fast)) as events,
                alice.websocket() as plain,
            ):
                await plain.ping()
                first = await alice.send_text(notes, "before")
                assert (await anext(events))["message_id"] == first.message_id
                server.stop()  # SIGTERM
                why = await asyncio.wait_for(plain.wait_closed(), 10)
                assert isinstance(why, QunliaoConnectionError)
                assert why.close_code == 1012, f"closed with {why.close_code}, not 1012"
                await server.astart()
                second = await alice.send_text(notes, "after")
                got = await asyncio.wait_for(anext(events), 10)
                assert got["message_id"] == second.message_id
    finally:
        server.stop()


async def test_mentions_follow_the_docs(make_user: MakeUser) -> None:
    """docs/api.md: `mentions` is a list of member user ids, or "all" (owner/admins of a group
    only) — over HTTP as over the WebSocket."""
    owner, member, outsider = await make_user("own"), await make_user("mem"), await make_user("out")
    group = await owner.client.create_group([member.user_id], "mentions")

    everyone = await owner.client.send_text(group, "@all lunch", mentions="all")
    async with owner.client.websocket() as ws:
        await ws.send_text(group, "@all again", mentions="all")
    stored = await owner.client.message(group, everyone.message_id)
    assert stored["mentions"] in ("all", ["all"])

    with pytest.raises(QunliaoError) as caught:
        await member.client.send_text(group, "@all from a member", mentions="all")
    assert caught.value.status in (400, 403)

    with pytest.raises(QunliaoError) as caught:
        await owner.client.send_text(group, "@stranger", mentions=[outsider.user_id])
    assert (caught.value.status, caught.value.code) == (400, "bad_request")
    async with owner.client.websocket() as ws:
        with pytest.raises(QunliaoError) as caught:
            await ws.send_text(group, "@stranger", mentions=[outsider.user_id])
    assert caught.value.code == "bad_request"


async def test_the_sdk_helpers_match_the_server(server: ServerProcess, make_user: MakeUser) -> None:
    """Every convenience method of the SDK, once, against the real server."""
    alice, bob, carol = await make_user("alice"), await make_user("bob"), await make_user("carol")
    profile = await alice.client.update_me(display_name="爱丽丝")
    assert profile["display_name"] == "爱丽丝"
    assert (await bob.client.user(alice.user_id))["display_name"] == "爱丽丝"
    assert alice.user_id in [u["user_id"] for u in await bob.client.search_users("爱丽")]

    tablet = await alice.device(server.url, "tablet")
    async with tablet:
        devices = await alice.client.devices()
        assert {d["device_name"] for d in devices} >= {"e2e", "tablet"}
        assert [d["current"] for d in devices].count(True) == 1
        await alice.client.logout_device(str(tablet.device_id))
        with pytest.raises(QunliaoError):
            await tablet.me()

    request = await alice.client.send_friend_request(bob.user_id)
    declined = await bob.client.decline_friend_request(request["request_id"])
    assert declined["status"] == "declined"
    request = await bob.client.send_friend_request(alice.user_id, note="again")
    await alice.client.accept_friend_request(request["request_id"])
    contact = await alice.client.set_remark(bob.user_id, "老板")
    assert contact["remark"] == "老板"
    assert [c["remark"] for c in await alice.client.contacts()] == ["老板"]
    await alice.client.remove_contact(bob.user_id)
    assert await bob.client.contacts() == []

    direct = await alice.client.create_direct(bob.user_id)
    await bob.client.block(alice.user_id)
    assert await bob.client.blocks() == [alice.user_id]
    with pytest.raises(QunliaoError) as caught:
        await alice.client.send_text(direct, "hello?")
    assert caught.value.status == 403
    assert bob.user_id not in [u["user_id"] for u in await alice.client.search_users(bob.username)]
    await bob.client.unblock(alice.user_id)
    await alice.client.send_text(direct, "hello again")

    group = await alice.client.create_group(
        [bob.user_id, carol.user_id], "team", idempotency_key="k1"
    )
    again = await alice.client.create_group(
        [bob.user_id, carol.user_id], "team", idempotency_key="k1"
    )
    assert again == group  # Idempotency-Key: the retry got the original answer
    updated = await alice.client.update_conversation(group, announcement="周五聚餐")
    assert updated["announcement"] == "周五聚餐"
    assert (await bob.client.conversation(group))["announcement"] == "周五聚餐"
    page = await alice.client.members(group, limit=2)
    assert len(page["members"]) == 2 and page["next_after"]
    rest = await alice.client.members(group, after=page["next_after"])
    everyone = {m["user_id"] for m in page["members"] + rest["members"]}
    assert everyone == {alice.user_id, bob.user_id, carol.user_id}
    promoted = await alice.client.update_member(group, bob.user_id, role="admin")
    assert promoted["role"] == "admin"
    muted = await bob.client.update_member(group, carol.user_id, muted_until=2**41)
    assert muted["muted_until"] == 2**41
    with pytest.raises(QunliaoError) as caught:
        await carol.client.send_text(group, "am I muted?")
    assert caught.value.status == 403
    await bob.client.update_member(group, carol.user_id, muted_until=None)
    await carol.client.send_text(group, "not any more")
    transferred = await alice.client.transfer(group, bob.user_id)
    assert transferred["owner_id"] == bob.user_id
    await alice.client.typing(group, True)
    await alice.client.leave(group)
    with pytest.raises(QunliaoError) as caught:
        await alice.client.history(group)
    assert caught.value.status == 403
    await bob.client.remove_member(group, carol.user_id)
    assert (await bob.client.conversation(group))["member_count"] == 1
