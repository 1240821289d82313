"""Inputs that once got past validation: each must be a clear 4xx and change nothing."""

from __future__ import annotations

import base64

from tests.support.app import Harness


async def test_lone_surrogates_are_bad_request(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    group = await h.group(alice, bob)
    headers = {**alice.headers, "content-type": "application/json"}
    raw = '{"client_txn_id": "s1", "msg_type": "text", "body": {"text": "bad \\ud800"}}'
    r = await h.client.post(f"/api/v1/conversations/{group}/messages", content=raw, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    raw_title = '{"title": "\\udfff"}'
    r = await h.client.patch(f"/api/v1/conversations/{group}", content=raw_title, headers=headers)
    assert r.status_code == 400
    assert (await h.send(bob, group, "still fine 没问题")).status_code == 201


async def test_odd_sync_tokens_and_huge_numbers_are_bad_request(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    conversation = await h.direct(alice, bob)
    superscript = base64.urlsafe_b64encode("s1.²".encode()).decode().rstrip("=")
    for params in ({"since": superscript}, {"since": "x" * 300}):
        r = await h.call(alice, "GET", "/api/v1/sync", params=params)
        assert r.status_code == 400, r.text
    base = f"/api/v1/conversations/{conversation}"
    huge = 10**30
    assert (await h.call(alice, "GET", f"{base}/messages", params={"before_seq": huge})
            ).status_code == 400  # fmt: skip
    assert (await h.call(alice, "GET", f"{base}/receipts", params={"seq": huge})
            ).status_code == 400  # fmt: skip
    assert (await h.call(alice, "POST", f"{base}/read", json={"seq": huge})).status_code == 400


async def test_retry_of_an_edited_message_returns_the_original(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    conversation = await h.direct(alice, bob)
    first = await h.send(alice, conversation, "helo", txn="e1")
    message_id = first.json()["message_id"]
    r = await h.call(alice, "PATCH", f"/api/v1/conversations/{conversation}/messages/{message_id}",
                     json={"body": {"text": "hello"}})  # fmt: skip
    assert r.status_code == 200
    retry = await h.send(alice, conversation, "helo", txn="e1")
    assert retry.status_code == 200 and retry.json() == first.json()


async def test_member_update_answers_the_whole_member(h: Harness) -> None:
    owner, member = await h.user("owner"), await h.user("member")
    group = await h.group(owner, member)
    r = await h.call(owner, "PATCH", f"/api/v1/conversations/{group}/members/{member.user_id}",
                     json={"role": "admin"})  # fmt: skip
    assert r.status_code == 200
    assert r.json()["role"] == "admin" and r.json()["display_name"] and "read_seq" in r.json()


async def test_two_transfers_at_once_leave_one_owner(h: Harness) -> None:
    import asyncio

    owner, a, b = await h.user("owner"), await h.user("a"), await h.user("b")
    group = await h.group(owner, a, b)
    path = f"/api/v1/conversations/{group}/transfer"
    results = await asyncio.gather(
        h.call(owner, "POST", path, json={"user_id": a.user_id}),
        h.call(owner, "POST", path, json={"user_id": b.user_id}),
    )
    assert sorted(r.status_code for r in results) == [200, 403]
    members = (await h.call(a, "GET", f"/api/v1/conversations/{group}/members")).json()
    assert [m["role"] for m in members["members"]].count("owner") == 1
