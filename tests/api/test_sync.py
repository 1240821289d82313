"""Sync tokens, long-poll, multi-device."""

from __future__ import annotations

import asyncio

from tests.support.app import Harness


async def test_sync_from_start_then_incremental(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    conversation = await h.direct(alice, bob)
    await h.send(alice, conversation, "one")
    events, token = await h.sync_all(bob)
    assert [e["type"] for e in events] == ["conversation.created", "message"]
    assert [e["seq"] for e in events] == [1, 2]
    await h.send(bob, conversation, "two")
    more, token2 = await h.sync_all(bob, token)
    assert [e.get("body") for e in more] == [{"text": "two"}]
    again, _ = await h.sync_all(bob, token2)
    assert again == []


async def test_sync_pages_never_skip_or_repeat(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    conversation = await h.direct(alice, bob)
    for i in range(25):
        await h.send(alice if i % 2 else bob, conversation, f"m{i}")
    seen, token = [], None
    while True:
        params = {"limit": 4} | ({"since": token} if token else {})
        page = (await h.call(bob, "GET", "/api/v1/sync", params=params)).json()
        token = page["next_token"]
        if not page["events"]:
            break
        seen.extend(e["seq"] for e in page["events"])
    assert seen == list(range(1, 27))


async def test_long_poll_wakes_on_new_event(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    conversation = await h.direct(alice, bob)
    _, token = await h.sync_all(bob)

    async def poll() -> dict:  # type: ignore[type-arg]
        r = await h.call(bob, "GET", "/api/v1/sync", params={"since": token, "timeout_ms": 10_000})
        return r.json()  # type: ignore[no-any-return]

    waiting = asyncio.create_task(poll())
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await h.send(alice, conversation, "wake up")
    page = await asyncio.wait_for(waiting, 5)
    assert [e["body"]["text"] for e in page["events"]] == ["wake up"]


async def test_long_poll_times_out_empty(h: Harness) -> None:
    alice = await h.user("alice")
    _, token = await h.sync_all(alice)
    r = await h.call(alice, "GET", "/api/v1/sync", params={"since": token, "timeout_ms": 200})
    assert r.status_code == 200 and r.json()["events"] == [] and r.json()["next_token"]


async def test_own_sends_reach_my_other_devices(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    laptop = await h.login(alice.username, "laptop")
    conversation = await h.direct(alice, bob)
    await h.send(alice, conversation, "from my phone")
    events, _ = await h.sync_all(laptop)
    assert [e["body"]["text"] for e in events if e["type"] == "message"] == ["from my phone"]


async def test_bad_sync_parameters(h: Harness) -> None:
    alice = await h.user("alice")
    for params in (
        {"since": "garbage!"},
        {"timeout_ms": 30_001},
        {"limit": 0},
        {"limit": 1001},
        {"since": "czEueA"},
    ):
        r = await h.call(alice, "GET", "/api/v1/sync", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["error"]["code"] == "bad_request"
