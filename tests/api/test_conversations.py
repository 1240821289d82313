"""Direct and group conversations, members, roles, ownership, announcements, mutes."""

from __future__ import annotations

import pytest

from qunliao.core.principal import Principal
from qunliao.features.accounts import AccountService
from tests.support.app import Harness


async def test_direct_is_one_per_pair_and_notes_to_self(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    r = await h.call(
        alice, "POST", "/api/v1/conversations", json={"kind": "direct", "member_ids": [bob.user_id]}
    )
    assert r.status_code == 201
    first = r.json()["conversation_id"]
    r = await h.call(
        bob, "POST", "/api/v1/conversations", json={"kind": "direct", "member_ids": [alice.user_id]}
    )
    assert r.status_code == 200 and r.json()["conversation_id"] == first
    r = await h.call(
        alice,
        "POST",
        "/api/v1/conversations",
        json={"kind": "direct", "member_ids": [alice.user_id]},
    )
    assert r.status_code == 201
    notes = r.json()["conversation_id"]
    assert (await h.send(alice, notes, "备忘")).status_code == 201
    listed = (await h.call(alice, "GET", "/api/v1/conversations")).json()["conversations"]
    assert [c["conversation_id"] for c in listed] == [notes, first]
    assert listed[0]["member_count"] == 1 and listed[0]["peer_id"] == alice.user_id
    assert listed[1]["peer_id"] == bob.user_id


async def test_bad_create_requests(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    cases = [
        {"kind": "direct", "member_ids": []},
        {"kind": "direct", "member_ids": [bob.user_id, alice.user_id]},
        {"kind": "channel", "member_ids": []},
        {"kind": "group", "member_ids": [], "title": "长" * 65},
        {"kind": "group", "member_ids": [f"u_{i}" for i in range(501)]},
        {"kind": "group", "member_ids": "nope"},
    ]
    for body in cases:
        r = await h.call(alice, "POST", "/api/v1/conversations", json=body)
        assert r.status_code == 400, (body, r.text)
    r = await h.call(
        alice, "POST", "/api/v1/conversations", json={"kind": "group", "member_ids": ["u_missing"]}
    )
    assert r.status_code == 404
    assert (await h.call(alice, "GET", "/api/v1/conversations")).json()["conversations"] == []


async def test_group_lifecycle(h: Harness) -> None:
    owner, admin, member, late = [await h.user(n) for n in ("owner", "admin", "member", "late")]
    group = await h.group(owner, admin, member, title="产品组 Product")
    r = await h.call(
        owner,
        "PATCH",
        f"/api/v1/conversations/{group}/members/{admin.user_id}",
        json={"role": "admin"},
    )
    assert r.status_code == 200 and r.json()["role"] == "admin"
    # a member cannot rename; an admin can; the announcement shows up
    r = await h.call(member, "PATCH", f"/api/v1/conversations/{group}", json={"title": "x"})
    assert r.status_code == 403
    r = await h.call(
        admin,
        "PATCH",
        f"/api/v1/conversations/{group}",
        json={"title": "新名字", "announcement": "周五发布"},
    )
    assert r.status_code == 200
    assert r.json()["title"] == "新名字" and r.json()["announcement"] == "周五发布"
    # adding a late member: they see events from their join on
    await h.send(owner, group, "before you joined")
    r = await h.call(
        member, "POST", f"/api/v1/conversations/{group}/members", json={"user_ids": [late.user_id]}
    )
    assert r.status_code == 200 and r.json()["added"] == [late.user_id]
    await h.send(owner, group, "welcome")
    history = (await h.call(late, "GET", f"/api/v1/conversations/{group}/messages")).json()
    assert [m["body"]["text"] for m in history["messages"]] == ["welcome"]
    events, _ = await h.sync_all(late)
    group_events = [e for e in events if e["conversation_id"] == group]
    assert group_events[0]["type"] == "members.added"
    # members list with roles
    r = await h.call(late, "GET", f"/api/v1/conversations/{group}/members")
    roles = {m["user_id"]: m["role"] for m in r.json()["members"]}
    assert roles == {
        owner.user_id: "owner",
        admin.user_id: "admin",
        member.user_id: "member",
        late.user_id: "member",
    }
    # admin removes a member; the member can't remove the admin
    r = await h.call(member, "DELETE", f"/api/v1/conversations/{group}/members/{admin.user_id}")
    assert r.status_code == 403
    r = await h.call(admin, "DELETE", f"/api/v1/conversations/{group}/members/{late.user_id}")
    assert r.status_code == 204
    assert (await h.send(late, group, "still here?")).status_code == 403
    assert (await h.call(late, "GET", f"/api/v1/conversations/{group}/messages")).status_code == 403
    # the owner must transfer before leaving
    r = await h.call(owner, "DELETE", f"/api/v1/conversations/{group}/members/{owner.user_id}")
    assert r.status_code == 409
    r = await h.call(
        owner, "POST", f"/api/v1/conversations/{group}/transfer", json={"user_id": member.user_id}
    )
    assert r.status_code == 200 and r.json()["owner_id"] == member.user_id
    r = await h.call(owner, "DELETE", f"/api/v1/conversations/{group}/members/{owner.user_id}")
    assert r.status_code == 204
    listed = (await h.call(owner, "GET", "/api/v1/conversations")).json()["conversations"]
    assert group not in [c["conversation_id"] for c in listed]


async def test_mute_member_and_mute_all(h: Harness) -> None:
    owner, member = await h.user("owner"), await h.user("member")
    group = await h.group(owner, member)
    r = await h.call(
        owner,
        "PATCH",
        f"/api/v1/conversations/{group}/members/{member.user_id}",
        json={"muted_until": h.clock.now_ms() + 60_000},
    )
    assert r.status_code == 200
    assert (await h.send(member, group, "hello")).status_code == 403
    h.clock.advance(61)
    assert (await h.send(member, group, "hello")).status_code == 201
    await h.call(owner, "PATCH", f"/api/v1/conversations/{group}", json={"muted_all": True})
    assert (await h.send(member, group, "again")).status_code == 403
    assert (await h.send(owner, group, "announcement only")).status_code == 201
    r = await h.call(
        member,
        "PATCH",
        f"/api/v1/conversations/{group}/members/{owner.user_id}",
        json={"muted_until": 1},
    )
    assert r.status_code == 403


async def test_direct_conversations_reject_group_operations(h: Harness) -> None:
    alice, bob, carol = await h.user("alice"), await h.user("bob"), await h.user("carol")
    direct = await h.direct(alice, bob)
    r = await h.call(
        alice, "POST", f"/api/v1/conversations/{direct}/members", json={"user_ids": [carol.user_id]}
    )
    assert r.status_code == 400
    r = await h.call(alice, "DELETE", f"/api/v1/conversations/{direct}/members/{alice.user_id}")
    assert r.status_code == 400


async def test_non_members_get_403_everywhere(h: Harness) -> None:
    alice, bob, mallory = await h.user("alice"), await h.user("bob"), await h.user("mallory")
    group = await h.group(alice, bob)
    r = await h.send(alice, group, "secret")
    seq = r.json()["seq"]
    message_id = r.json()["message_id"]
    base = f"/api/v1/conversations/{group}"
    calls = [
        ("GET", base, None),
        ("PATCH", base, {"title": "mine"}),
        ("GET", f"{base}/messages", None),
        ("GET", f"{base}/messages/{message_id}", None),
        (
            "POST",
            f"{base}/messages",
            {"client_txn_id": "x", "msg_type": "text", "body": {"text": "hi"}},
        ),
        ("GET", f"{base}/members", None),
        ("POST", f"{base}/members", {"user_ids": [mallory.user_id]}),
        ("GET", f"{base}/receipts?seq={seq}", None),
        ("POST", f"{base}/read", {"seq": seq}),
        ("POST", f"{base}/messages/{message_id}/recall", None),
        ("POST", f"{base}/typing", {"typing": True}),
    ]
    for method, path, body in calls:
        r = await h.call(mallory, method, path, json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"]["code"] == "forbidden"
    events, _ = await h.sync_all(mallory)
    assert all(e["conversation_id"] != group for e in events)
    r = await h.call(mallory, "GET", "/api/v1/conversations/c_doesnotexist")
    assert r.status_code == 404


async def test_idempotency_key_makes_group_creation_retry_safe(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    body = {"kind": "group", "member_ids": [bob.user_id], "title": "一次 once"}
    headers = {**alice.headers, "Idempotency-Key": "create-1"}
    first = await h.client.post("/api/v1/conversations", json=body, headers=headers)
    again = await h.client.post("/api/v1/conversations", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = await h.client.post("/api/v1/conversations", json={**body, "title": "二"},
                                headers=headers)  # fmt: skip
    assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"
    # the same key of another user is another request
    bobs = await h.client.post(
        "/api/v1/conversations",
        headers={**bob.headers, "Idempotency-Key": "create-1"},
        json=body | {"member_ids": []},
    )
    assert bobs.status_code == 201 and bobs.json() != first.json()
    listed = (await h.call(alice, "GET", "/api/v1/conversations")).json()["conversations"]
    assert len(listed) == 1
    bad = await h.client.post(
        "/api/v1/conversations", json=body, headers={**alice.headers, "Idempotency-Key": "x" * 129}
    )
    assert bad.status_code == 400


async def test_a_request_with_an_idempotency_key_is_authenticated_once(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    lookups = 0
    accounts = h.services.need(AccountService)
    access_token = accounts.access_token

    async def counted(token: str | None) -> Principal:
        nonlocal lookups
        lookups += 1
        return await access_token(token)

    # the middleware's authenticate and the routes' auth dependency both look tokens up here
    monkeypatch.setattr(accounts, "access_token", counted)
    body = {"kind": "group", "member_ids": [bob.user_id], "title": "一次 once"}
    for key in ("count-1", "count-1", None):  # the route runs, the retry is replayed, no key
        lookups = 0
        headers = alice.headers | ({"Idempotency-Key": key} if key else {})
        r = await h.client.post("/api/v1/conversations", json=body, headers=headers)
        assert r.status_code == 201 and lookups == 1, (key, r.text, lookups)
    stranger = await h.client.post(
        "/api/v1/conversations",
        json=body,
        headers={"Authorization": "Bearer nope", "Idempotency-Key": "count-2"},
    )
    assert stranger.status_code == 401
