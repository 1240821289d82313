"""Inputs that once got past validation: each must be a clear 4xx and change nothing."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from qunliao.features.conversations import ConversationService
from qunliao.storage import eventlog
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


async def test_nul_anywhere_is_bad_request_and_changes_nothing(h: Harness) -> None:
    """U+0000 cannot be stored in PostgreSQL text: in a path, a query or a JSON string it is a
    400 on both databases, never a 500 or a 503 "retry" (issue 14, item 1)."""
    alice, bob = await h.user("alice"), await h.user("bob")
    group = await h.group(alice, bob)
    base = f"/api/v1/conversations/{group}"
    async with h.services.db.read() as conn:
        before = await eventlog.max_position(conn)
    probes = [
        ("GET", "/api/v1/conversations/c_%00", None, None),
        ("GET", "/api/v1/users/u_%00", None, None),
        ("GET", "/api/v1/users", {"q": "\x00"}, None),
        ("GET", f"{base}/members", {"after": "\x00"}, None),
        ("PATCH", base, None, {"title": "群\x00"}),
        ("PATCH", base, None, {"announcement": "公告\x00"}),
        ("POST", "/api/v1/friend-requests", None, {"user_id": bob.user_id, "note": "hi\x00"}),
        ("POST", f"{base}/members", None, {"user_ids": ["u_\x00"]}),
        ("PUT", "/api/v1/blocks/u_%00", None, None),
        ("DELETE", "/api/v1/sessions/d_%00", None, None),
        ("POST", f"{base}/messages", None,
         {"client_txn_id": "t\x00", "msg_type": "text", "body": {"text": "hi"}}),
        ("POST", f"{base}/messages", None,
         {"client_txn_id": "t1", "msg_type": "text", "body": {"text": "h\x00i"}}),
        ("POST", f"{base}/messages", None,
         {"client_txn_id": "t2", "msg_type": "text", "body": {"text": "hi"}, "reply_to": "\x00"}),
    ]  # fmt: skip
    for method, path, params, body in probes:
        r = await h.call(alice, method, path, params=params, json=body)
        assert r.status_code == 400, (method, path, params, body, r.status_code, r.text)
        assert r.json()["error"]["code"] == "bad_request"
    login = {"username": "ali\x00ce", "password": "correct horse", "device_name": "x"}
    assert (await h.client.post("/api/v1/sessions", json=login)).status_code == 400
    async with h.services.db.read() as conn:
        assert await eventlog.max_position(conn) == before  # nothing was written
    assert (await h.send(bob, group, "still fine 没问题")).status_code == 201


async def test_http_bodies_have_strict_types(h: Harness) -> None:
    """JSON true is not 1, "1" is not a number, 0 is not false: 400 over HTTP as over the
    WebSocket (issue 14, item 8), and nothing changes."""
    alice, bob = await h.user("alice"), await h.user("bob")
    group = await h.group(alice, bob)
    base = f"/api/v1/conversations/{group}"
    await h.send(alice, group, "一")
    for method, path, body in [
        ("POST", f"{base}/read", {"seq": True}),
        ("POST", f"{base}/read", {"seq": "1"}),
        ("POST", f"{base}/read", {"seq": 1.5}),  # 1.0 is an integer (JSON Schema): accepted
        ("POST", f"{base}/typing", {"typing": "yes"}),
        ("POST", f"{base}/typing", {"typing": 1}),
        ("PATCH", base, {"muted_all": 0}),
        ("PATCH", base, {"title": 5}),
    ]:
        r = await h.call(alice, method, path, json=body)
        assert r.status_code == 400, (path, body, r.text)
        assert r.json()["error"]["code"] == "bad_request"
    conversation = (await h.call(alice, "GET", base)).json()
    assert conversation["muted_all"] is False and conversation["read_seq"] == 2


async def test_a_login_is_never_stored_for_replay(h: Harness) -> None:
    """A new access token must not sit in clear in the replay store (issue 14, item 7): a
    login with an Idempotency-Key runs again on retry, and nothing of it is kept."""
    alice = await h.user("alice")
    login = {"username": alice.username, "password": "correct horse", "device_name": "平板"}
    headers = {**alice.headers, "Idempotency-Key": "login-1"}
    first = await h.client.post("/api/v1/sessions", json=login, headers=headers)
    again = await h.client.post("/api/v1/sessions", json=login, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["device_id"] != again.json()["device_id"]
    from sqlalchemy import text

    async with h.services.db.read() as conn:
        rows = (await conn.execute(text("SELECT * FROM idempotency_keys"))).all()
    assert not any(first.json()["access_token"] in str(row) for row in rows)


async def test_repeated_read_positions_write_nothing_and_are_rate_limited(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """880 `read` frames a second, each a database write, slowed everyone (issue 14, item 2):
    a position that does not move writes nothing, and the rest is rate-limited."""
    alice, bob = await h.user("alice"), await h.user("bob")
    group = await h.group(alice, bob)
    sent = (await h.send(alice, group, "读我 read me")).json()
    conversations = h.services.need(ConversationService)
    writes = 0
    advance = conversations.do_advance_read

    async def counted(*args: Any) -> bool:
        nonlocal writes
        writes += 1
        return await advance(*args)

    monkeypatch.setattr(conversations, "do_advance_read", counted)
    path = f"/api/v1/conversations/{group}/read"
    statuses = [
        (await h.call(bob, "POST", path, json={"seq": sent["seq"]})).status_code for _ in range(420)
    ]
    assert writes == 1
    assert statuses[:400] == [204] * 400 and statuses[-1] == 429
    h.clock.advance(10)
    assert (await h.call(bob, "POST", path, json={"seq": 0})).status_code == 204  # never back
    assert writes == 1
    members = (await h.call(alice, "GET", f"/api/v1/conversations/{group}/members")).json()
    assert {m["user_id"]: m["read_seq"] for m in members["members"]}[bob.user_id] == sent["seq"]


async def test_bodies_over_the_limit_are_too_large_before_they_are_read(h: Harness) -> None:
    """A 512 MB registration once took the process to 1.7 GB (issue 14, item 3, bodies): over
    `max_body_bytes` (1 MiB) is 413 from Content-Length, or as soon as a streamed body passes
    it; an Idempotency-Key changes nothing about that (item 9)."""
    alice = await h.user("alice")
    big = b'{"username": "' + b"x" * (2 << 20) + b'"}'
    headers = {"content-type": "application/json"}
    r = await h.client.post("/api/v1/accounts", content=big, headers=headers)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    keyed = {**headers, **alice.headers, "Idempotency-Key": "big-1"}
    r = await h.client.post("/api/v1/conversations", content=big, headers=keyed)
    assert r.status_code == 413

    async def stream() -> Any:
        for _ in range(64):  # 64 × 64 KiB, no Content-Length
            yield b"x" * 65536

    r = await h.client.post("/api/v1/accounts", content=stream(), headers=headers)
    assert r.status_code == 413
    assert (await h.client.get("/healthz")).status_code == 200
    assert (await h.send(alice, await h.group(alice), "仍然正常 still fine")).status_code == 201
