"""Friend requests, contacts with remarks, blocks, user search."""

from __future__ import annotations

import asyncio

from tests.support.app import Harness


async def test_friend_request_accept_and_remark(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    r = await h.call(
        alice,
        "POST",
        "/api/v1/friend-requests",
        json={"user_id": bob.user_id, "note": "我是爱丽丝"},
    )
    assert r.status_code == 201, r.text
    request_id = r.json()["request_id"]
    again = await h.call(alice, "POST", "/api/v1/friend-requests", json={"user_id": bob.user_id})
    assert again.status_code == 200 and again.json()["request_id"] == request_id
    incoming = (await h.call(bob, "GET", "/api/v1/friend-requests")).json()["incoming"]
    assert [i["note"] for i in incoming] == ["我是爱丽丝"]
    events, _ = await h.sync_all(bob)
    assert any(e["type"] == "friend_request.received" for e in events)
    # only the addressee may answer
    r = await h.call(alice, "POST", f"/api/v1/friend-requests/{request_id}/accept")
    assert r.status_code == 403
    r = await h.call(bob, "POST", f"/api/v1/friend-requests/{request_id}/accept")
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    contacts = (await h.call(alice, "GET", "/api/v1/contacts")).json()["contacts"]
    assert [c["user_id"] for c in contacts] == [bob.user_id]
    r = await h.call(alice, "PATCH", f"/api/v1/contacts/{bob.user_id}", json={"remark": "老板"})
    assert r.status_code == 200 and r.json()["remark"] == "老板"
    # the remark is mine only
    theirs = (await h.call(bob, "GET", "/api/v1/contacts")).json()["contacts"]
    assert theirs[0]["remark"] == ""
    r = await h.call(alice, "POST", "/api/v1/friend-requests", json={"user_id": bob.user_id})
    assert r.status_code == 409


async def test_mutual_requests_accept_each_other(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    await h.call(alice, "POST", "/api/v1/friend-requests", json={"user_id": bob.user_id})
    r = await h.call(bob, "POST", "/api/v1/friend-requests", json={"user_id": alice.user_id})
    assert r.json()["status"] == "accepted"


async def test_decline_and_bad_requests(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    r = await h.call(alice, "POST", "/api/v1/friend-requests", json={"user_id": alice.user_id})
    assert r.status_code == 400
    r = await h.call(alice, "POST", "/api/v1/friend-requests", json={"user_id": "u_nobody"})
    assert r.status_code == 404
    r = await h.call(
        alice, "POST", "/api/v1/friend-requests", json={"user_id": bob.user_id, "note": "x" * 201}
    )
    assert r.status_code == 400
    r = await h.call(alice, "POST", "/api/v1/friend-requests", json={"user_id": bob.user_id})
    request_id = r.json()["request_id"]
    r = await h.call(bob, "POST", f"/api/v1/friend-requests/{request_id}/decline")
    assert r.json()["status"] == "declined"
    r = await h.call(bob, "POST", f"/api/v1/friend-requests/{request_id}/accept")
    assert r.status_code == 409
    assert (await h.call(alice, "GET", "/api/v1/contacts")).json()["contacts"] == []


async def test_search_finds_chinese_names_and_hides_blockers(h: Harness) -> None:
    alice = await h.user("alice", display_name="张伟 Zhang Wei")
    bob = await h.user("bob")
    r = await h.call(bob, "GET", "/api/v1/users", params={"q": "张伟"})
    assert [u["user_id"] for u in r.json()["users"]] == [alice.user_id]
    r = await h.call(bob, "GET", "/api/v1/users", params={"q": alice.username[:4]})
    assert alice.user_id in [u["user_id"] for u in r.json()["users"]]
    assert (await h.call(alice, "PUT", f"/api/v1/blocks/{bob.user_id}")).status_code == 204
    r = await h.call(bob, "GET", "/api/v1/users", params={"q": "张伟"})
    assert r.json()["users"] == []
    assert (await h.call(alice, "GET", "/api/v1/blocks")).json()["user_ids"] == [bob.user_id]


async def test_blocked_user_cannot_message_or_request(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    conversation = await h.direct(bob, alice)
    assert (await h.send(bob, conversation, "hi")).status_code == 201
    await h.call(alice, "PUT", f"/api/v1/blocks/{bob.user_id}")
    r = await h.send(bob, conversation, "hello?")
    assert r.status_code == 403
    r = await h.call(bob, "POST", "/api/v1/friend-requests", json={"user_id": alice.user_id})
    assert r.status_code == 403
    # alice can still write to bob, and unblocking restores bob
    assert (await h.send(alice, conversation, "ok")).status_code == 201
    await h.call(alice, "DELETE", f"/api/v1/blocks/{bob.user_id}")
    assert (await h.send(bob, conversation, "thanks")).status_code == 201


async def test_crossed_friend_requests_make_friends_once(h: Harness) -> None:
    """Two users asking each other at the same moment (PostgreSQL runs both at once): the
    second request finds the first and accepts it; nothing is left pending."""
    for _ in range(5):
        a, b = await h.user("xm"), await h.user("xh")
        r1, r2 = await asyncio.gather(
            h.call(a, "POST", "/api/v1/friend-requests", json={"user_id": b.user_id, "note": "嗨"}),
            h.call(b, "POST", "/api/v1/friend-requests", json={"user_id": a.user_id, "note": "hi"}),
        )
        assert {r1.status_code, r2.status_code} <= {200, 201}, (r1.text, r2.text)
        requests = (await h.call(a, "GET", "/api/v1/friend-requests")).json()
        everything = requests["incoming"] + requests["outgoing"]
        assert [r["status"] for r in everything] == ["accepted"], requests
        contacts = (await h.call(a, "GET", "/api/v1/contacts")).json()["contacts"]
        assert [c["user_id"] for c in contacts] == [b.user_id]


async def test_whom_you_blocked_cannot_put_you_into_a_group(h: Harness) -> None:
    """After A blocks C, C can neither create a group with A nor add A to one (issue 14, item
    5): 403, nothing created; others are unaffected."""
    a, b, c = await h.user("a"), await h.user("b"), await h.user("c")
    assert (await h.call(a, "PUT", f"/api/v1/blocks/{c.user_id}")).status_code == 204
    r = await h.call(
        c,
        "POST",
        "/api/v1/conversations",
        json={"kind": "group", "member_ids": [b.user_id, a.user_id], "title": "骗局"},
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    listed = (await h.call(c, "GET", "/api/v1/conversations")).json()["conversations"]
    assert listed == []
    group = await h.group(c, b)
    r = await h.call(
        c, "POST", f"/api/v1/conversations/{group}/members", json={"user_ids": [a.user_id]}
    )
    assert r.status_code == 403
    r = await h.call(
        b, "POST", f"/api/v1/conversations/{group}/members", json={"user_ids": [a.user_id]}
    )
    assert r.status_code == 200  # b was not blocked
    assert (await h.call(a, "DELETE", f"/api/v1/blocks/{c.user_id}")).status_code == 204
    assert (await h.group(c, a)).startswith("c_")
