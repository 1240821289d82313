"""Sending (idempotent), history, edit, recall, read positions, receipts, limits."""

from __future__ import annotations

import asyncio

from tests.support.app import Harness, running_app


async def test_send_is_idempotent_per_device(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    conversation = await h.direct(alice, bob)
    first = await h.send(alice, conversation, "你好", txn="same")
    assert first.status_code == 201
    again = await h.send(alice, conversation, "你好", txn="same")
    assert again.status_code == 200 and again.json() == first.json()
    clash = await h.send(alice, conversation, "different", txn="same")
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "conflict"
    other = await h.group(alice, bob)
    clash = await h.send(alice, other, "你好", txn="same")
    assert clash.status_code == 409
    # another device may reuse the id: it is a different send
    phone = await h.login(alice.username, "phone")
    assert (await h.send(phone, conversation, "你好", txn="same")).status_code == 201
    history = (await h.call(bob, "GET", f"/api/v1/conversations/{conversation}/messages")).json()
    assert [m["body"]["text"] for m in history["messages"]] == ["你好", "你好"]


async def test_concurrent_duplicate_sends_store_one(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    conversation = await h.direct(alice, bob)
    results = await asyncio.gather(
        *(h.send(alice, conversation, "once", txn="dup") for _ in range(20))
    )
    assert {r.json()["message_id"] for r in results} == {results[0].json()["message_id"]}
    assert sorted(r.status_code for r in results).count(201) == 1
    history = (await h.call(bob, "GET", f"/api/v1/conversations/{conversation}/messages")).json()
    assert len(history["messages"]) == 1


async def test_bad_messages_change_nothing(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    conversation = await h.direct(alice, bob)
    path = f"/api/v1/conversations/{conversation}/messages"
    cases = [
        ({"client_txn_id": "a", "msg_type": "text", "body": {"text": ""}}, 400),
        ({"client_txn_id": "a", "msg_type": "image", "body": {"text": "x"}}, 400),
        ({"client_txn_id": "", "msg_type": "text", "body": {"text": "x"}}, 400),
        ({"msg_type": "text", "body": {"text": "x"}}, 400),
        ({"client_txn_id": "a", "msg_type": "text", "body": {"text": 5}}, 400),
        ({"client_txn_id": "a", "msg_type": "text", "body": {"text": "x"}, "reply_to": "m_x"}, 400),
        ({"client_txn_id": "a", "msg_type": "text", "body": {"text": "字" * 5462}}, 413),
        (
            {"client_txn_id": "a", "msg_type": "text", "body": {"text": "x"}, "mentions": ["all"]},
            403,
        ),
    ]
    for body, status in cases:
        r = await h.call(alice, "POST", path, json=body)
        assert r.status_code == status, (body, r.text)
    exactly = "字" * 5461 + "a"  # 16,384 bytes
    assert (await h.send(alice, conversation, exactly)).status_code == 201
    history = (await h.call(alice, "GET", path)).json()["messages"]
    assert len(history) == 1


async def test_client_txn_id_is_bounded_at_128_characters(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    conversation = await h.direct(alice, bob)
    too_long = await h.send(alice, conversation, "x", txn="t" * 129)
    assert too_long.status_code == 400, too_long.text
    assert too_long.json()["error"]["code"] == "bad_request"
    assert (await h.send(alice, conversation, "x", txn="t" * 128)).status_code == 201


async def test_history_pages_backwards(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    conversation = await h.direct(alice, bob)
    for i in range(7):
        await h.send(alice, conversation, f"m{i}")
    path = f"/api/v1/conversations/{conversation}/messages"
    page = (await h.call(bob, "GET", path, params={"limit": 3})).json()["messages"]
    assert [m["body"]["text"] for m in page] == ["m6", "m5", "m4"]
    page = (
        await h.call(bob, "GET", path, params={"limit": 3, "before_seq": page[-1]["seq"]})
    ).json()["messages"]
    assert [m["body"]["text"] for m in page] == ["m3", "m2", "m1"]
    for bad in ({"limit": 0}, {"limit": 201}, {"before_seq": "x"}):
        assert (await h.call(bob, "GET", path, params=bad)).status_code == 400


async def test_unread_read_positions_and_receipts(h: Harness) -> None:
    alice, bob, carol = await h.user("alice"), await h.user("bob"), await h.user("carol")
    group = await h.group(alice, bob, carol)
    sent = [(await h.send(alice, group, f"消息{i}")).json() for i in range(3)]
    listed = (await h.call(bob, "GET", "/api/v1/conversations")).json()["conversations"]
    assert listed[0]["unread_count"] == 3 and listed[0]["last_seq"] == sent[-1]["seq"]
    mine = (await h.call(alice, "GET", "/api/v1/conversations")).json()["conversations"]
    assert mine[0]["unread_count"] == 0
    base = f"/api/v1/conversations/{group}"
    r = await h.call(alice, "GET", f"{base}/receipts", params={"seq": sent[1]["seq"]})
    assert r.json() == {"read_by": [], "unread_by": sorted([bob.user_id, carol.user_id])} or sorted(
        r.json()["unread_by"]
    ) == sorted([bob.user_id, carol.user_id])
    assert (
        await h.call(bob, "POST", f"{base}/read", json={"seq": sent[1]["seq"]})
    ).status_code == 204
    # never backwards
    assert (await h.call(bob, "POST", f"{base}/read", json={"seq": 1})).status_code == 204
    r = await h.call(alice, "GET", f"{base}/receipts", params={"seq": sent[1]["seq"]})
    assert r.json()["read_by"] == [bob.user_id] and r.json()["unread_by"] == [carol.user_id]
    listed = (await h.call(bob, "GET", "/api/v1/conversations")).json()["conversations"]
    assert listed[0]["unread_count"] == 1 and listed[0]["read_seq"] == sent[1]["seq"]
    r = await h.call(bob, "POST", f"{base}/read", json={"seq": sent[-1]["seq"] + 1})
    assert r.status_code == 400
    r = await h.call(bob, "POST", f"{base}/read", json={"seq": -1})
    assert r.status_code == 400
    # a recalled message no longer counts as unread
    await h.call(alice, "POST", f"{base}/messages/{sent[2]['message_id']}/recall")
    listed = (await h.call(carol, "GET", "/api/v1/conversations")).json()["conversations"]
    assert listed[0]["unread_count"] == 2
    r = await h.call(alice, "GET", f"{base}/receipts", params={"seq": 999})
    assert r.status_code == 404


async def test_recall_window_and_body_erased(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    group = await h.group(alice, bob)
    base = f"/api/v1/conversations/{group}"
    secret = (await h.send(bob, group, "我的密码是 hunter2")).json()
    await h.send(bob, group, "edit me")
    r = await h.call(alice, "POST", f"{base}/messages/{secret['message_id']}/recall")
    assert r.status_code == 200  # alice owns the group: any time
    r = await h.call(bob, "POST", f"{base}/messages/{secret['message_id']}/recall")
    assert r.status_code == 200  # a retry answers with the same recall event
    recalled_seq = r.json()["seq"]
    late = (await h.send(bob, group, "too late to take back")).json()
    h.clock.advance(121)
    r = await h.call(bob, "POST", f"{base}/messages/{late['message_id']}/recall")
    assert r.status_code == 403
    events, _ = await h.sync_all(bob)
    message = next(
        e for e in events if e.get("message_id") == secret["message_id"] and e["type"] == "message"
    )
    assert message["body"] is None and message["recalled_at"] is not None
    assert any(e["type"] == "message.recalled" and e["seq"] == recalled_seq for e in events)
    history = (await h.call(alice, "GET", f"{base}/messages")).json()["messages"]
    assert next(m for m in history if m["message_id"] == secret["message_id"])["body"] is None
    # storage holds no trace of the text
    db = h.services.db
    from sqlalchemy import text

    async with db.read() as conn:
        rows = (await conn.execute(text("SELECT * FROM events"))).all()
    assert not any("hunter2" in str(row) for row in rows)


async def test_edit_message(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    conversation = await h.direct(alice, bob)
    base = f"/api/v1/conversations/{conversation}"
    sent = (await h.send(alice, conversation, "helo")).json()
    r = await h.call(
        bob, "PATCH", f"{base}/messages/{sent['message_id']}", json={"body": {"text": "hacked"}}
    )
    assert r.status_code == 403
    r = await h.call(
        alice, "PATCH", f"{base}/messages/{sent['message_id']}", json={"body": {"text": "hello"}}
    )
    assert r.status_code == 200
    got = (await h.call(bob, "GET", f"{base}/messages/{sent['message_id']}")).json()
    assert got["body"] == {"text": "hello"} and got["edited_at"] is not None
    events, _ = await h.sync_all(bob)
    assert [e["body"] for e in events if e["type"] == "message.edited"] == [{"text": "hello"}]


async def test_reply_and_mentions(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    group = await h.group(alice, bob)
    first = (await h.send(bob, group, "question?")).json()
    r = await h.send(
        alice, group, "@bob answer", reply_to=first["message_id"], mentions=[bob.user_id]
    )
    assert r.status_code == 201
    r = await h.send(alice, group, "@all meeting", mentions=["all"])
    assert r.status_code == 201
    history = (await h.call(bob, "GET", f"/api/v1/conversations/{group}/messages")).json()
    assert history["messages"][1]["reply_to"] == first["message_id"]
    assert history["messages"][1]["mentions"] == [bob.user_id]
    assert history["messages"][0]["mentions"] == ["all"]
    assert (await h.send(bob, group, "@all no", mentions=["all"])).status_code == 403


async def test_rate_limit_is_429_with_retry_after(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with running_app(
        f"sqlite:///{tmp_path / 'q.db'}", rate_limit_per_s=1, rate_limit_burst=3
    ) as h:
        alice, bob = await h.user("alice"), await h.user("bob")
        conversation = await h.direct(alice, bob)
        codes = [(await h.send(alice, conversation, f"m{i}")).status_code for i in range(3)]
        assert codes == [201, 201, 201]
        r = await h.send(alice, conversation, "one too many")
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        assert int(r.headers["Retry-After"]) >= 1
        h.clock.advance(1)
        assert (await h.send(alice, conversation, "ok again")).status_code == 201
