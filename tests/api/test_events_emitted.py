"""Every `do_*` that writes emits exactly the events clients need: type, stream and audience.

Read straight from the log after each action, and the audience asked of the stream's kind (the
same `Readers` the hub delivers by), so a change to what an action emits fails here first.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from qunliao.core.events import StoredEvent
from qunliao.core.ids import inbox_stream_id
from qunliao.storage import eventlog
from tests.support.app import Account, Harness


async def _emitted(h: Harness, action: Awaitable[Any]) -> list[StoredEvent]:
    async with h.services.db.read() as conn:
        before = await eventlog.max_position(conn)
    await action
    async with h.services.db.read() as conn:
        return await eventlog.events_after(conn, before, 100)


async def _readers(h: Harness, event: StoredEvent, *users: Account) -> set[str]:
    """Which of these users the event's stream kind lets see it."""
    kind = h.services.registry.kind_of(event.stream_id)
    assert kind is not None, event.stream_id
    readers = await kind.audience.readers(event.stream_id)
    return {u.username for u in users if readers.may_see(u.user_id, event.seq)}


def _kinds(events: list[StoredEvent]) -> list[tuple[str, str]]:
    return [(e.type, e.stream_id) for e in events]


async def _ok(response: Awaitable[Any], status: int = 200) -> Any:
    r = await response
    assert r.status_code == status, r.text
    return r.json() if r.content else None


async def test_conversation_actions(h: Harness) -> None:
    alice, bob, carol = await h.user("alice"), await h.user("bob"), await h.user("carol")
    call = h.call
    created = await _emitted(
        h, _ok(call(alice, "POST", "/api/v1/conversations",
                    json={"kind": "group", "member_ids": [bob.user_id], "title": "项目组"}), 201)
    )  # fmt: skip
    group = created[0].stream_id
    assert _kinds(created) == [("conversation.created", group)]
    assert created[0].payload == {
        "kind": "group", "title": "项目组", "by": alice.user_id,
        "member_ids": [alice.user_id, bob.user_id],
    }  # fmt: skip
    assert await _readers(h, created[0], alice, bob, carol) == {alice.username, bob.username}
    base = f"/api/v1/conversations/{group}"

    updated = await _emitted(h, _ok(call(alice, "PATCH", base, json={"title": "新名字"})))
    assert _kinds(updated) == [("conversation.updated", group)]
    assert updated[0].payload == {"by": alice.user_id, "title": "新名字"}

    added = await _emitted(
        h, _ok(call(alice, "POST", f"{base}/members", json={"user_ids": [carol.user_id]}))
    )
    assert _kinds(added) == [("members.added", group)]
    assert added[0].payload == {"user_ids": [carol.user_id], "by": alice.user_id}
    everyone = {alice.username, bob.username, carol.username}
    assert await _readers(h, added[0], alice, bob, carol) == everyone
    assert await _readers(h, created[0], carol) == set()  # from the join on

    role = await _emitted(
        h, _ok(call(alice, "PATCH", f"{base}/members/{bob.user_id}", json={"role": "admin"}))
    )
    assert _kinds(role) == [("member.updated", group)]
    assert role[0].payload == {
        "user_id": bob.user_id, "by": alice.user_id, "role": "admin", "muted_until": None,
    }  # fmt: skip

    removed = await _emitted(h, _ok(call(bob, "DELETE", f"{base}/members/{carol.user_id}"), 204))
    assert _kinds(removed) == [("members.removed", group)]
    assert removed[0].payload == {"user_ids": [carol.user_id], "by": bob.user_id,
                                  "reason": "removed"}  # fmt: skip
    assert carol.username in await _readers(h, removed[0], carol)  # sees her own removal

    transfer = await _emitted(
        h, _ok(call(alice, "POST", f"{base}/transfer", json={"user_id": bob.user_id}))
    )
    assert _kinds(transfer) == [
        ("member.updated", group), ("member.updated", group), ("conversation.updated", group),
    ]  # fmt: skip
    assert [e.payload.get("role") for e in transfer[:2]] == ["owner", "admin"]
    assert transfer[2].payload == {"by": alice.user_id, "owner_id": bob.user_id}

    sent = await _emitted(h, h.send(alice, group, "你好"))
    assert _kinds(sent) == [("message", group)]
    assert await _readers(h, sent[0], alice, bob, carol) == {alice.username, bob.username}


async def test_message_actions(h: Harness) -> None:
    alice, bob, carol = await h.user("alice"), await h.user("bob"), await h.user("carol")
    direct = await h.direct(alice, bob)
    base = f"/api/v1/conversations/{direct}/messages"
    sent = await _emitted(h, h.send(alice, direct, "第一条 first"))
    assert _kinds(sent) == [("message", direct)]
    assert sent[0].payload == {"msg_type": "text", "body": {"text": "第一条 first"}}
    assert sent[0].sender_id == alice.user_id and sent[0].ref_id
    assert await _readers(h, sent[0], alice, bob, carol) == {alice.username, bob.username}
    message_id = sent[0].ref_id

    edited = await _emitted(
        h, _ok(h.call(alice, "PATCH", f"{base}/{message_id}", json={"body": {"text": "改了"}}))
    )
    assert _kinds(edited) == [("message.edited", direct)]
    assert edited[0].ref_id == message_id and edited[0].payload == {"body": {"text": "改了"}}

    recalled = await _emitted(h, _ok(h.call(alice, "POST", f"{base}/{message_id}/recall")))
    assert _kinds(recalled) == [("message.recalled", direct)]
    assert recalled[0].ref_id == message_id
    assert recalled[0].payload == {"by": alice.user_id, "recalled_at": h.clock.now_ms()}

    read = await _emitted(
        h,
        _ok(h.call(bob, "POST", f"/api/v1/conversations/{direct}/read",
                   json={"seq": sent[0].seq}), 204),
    )  # fmt: skip
    assert read == []  # read positions are state, not events
    typing = await _emitted(
        h, _ok(h.call(bob, "POST", f"/api/v1/conversations/{direct}/typing", json={}), 204)
    )
    assert typing == []


async def test_contact_actions_reach_only_the_inboxes_they_concern(h: Harness) -> None:
    alice, bob, carol = await h.user("alice"), await h.user("bob"), await h.user("carol")
    requested = await _emitted(
        h, _ok(h.call(alice, "POST", "/api/v1/friend-requests",
                      json={"user_id": bob.user_id, "note": "我是 alice"}), 201)
    )  # fmt: skip
    assert _kinds(requested) == [("friend_request.received", inbox_stream_id(bob.user_id))]
    request = requested[0].payload["request"]
    assert request["from_user_id"] == alice.user_id and request["status"] == "pending"
    assert await _readers(h, requested[0], alice, bob, carol) == {bob.username}

    accepted = await _emitted(
        h, _ok(h.call(bob, "POST", f"/api/v1/friend-requests/{request['request_id']}/accept"))
    )
    assert _kinds(accepted) == [
        ("friend_request.accepted", inbox_stream_id(alice.user_id)),
        ("friend_request.accepted", inbox_stream_id(bob.user_id)),
    ]
    assert [await _readers(h, e, alice, bob, carol) for e in accepted] == [
        {alice.username}, {bob.username},
    ]  # fmt: skip

    declined_request = await _emitted(
        h, _ok(h.call(carol, "POST", "/api/v1/friend-requests",
                      json={"user_id": alice.user_id, "note": ""}), 201)
    )  # fmt: skip
    carol_request = declined_request[0].payload["request"]["request_id"]
    quiet = [
        (h.call(alice, "POST", f"/api/v1/friend-requests/{carol_request}/decline"), 200),
        (h.call(alice, "PATCH", f"/api/v1/contacts/{bob.user_id}", json={"remark": "老鲍"}), 200),
        (h.call(alice, "PUT", f"/api/v1/blocks/{carol.user_id}"), 204),
        (h.call(alice, "DELETE", f"/api/v1/blocks/{carol.user_id}"), 204),
        (h.call(alice, "DELETE", f"/api/v1/contacts/{bob.user_id}"), 204),
    ]
    for action, status in quiet:
        assert await _emitted(h, _ok(action, status)) == []


async def test_account_actions_emit_nothing(h: Harness) -> None:
    """Accounts and sessions are not events: registering writes no inbox or stream at all."""
    registered = await _emitted(
        h, _ok(h.client.post("/api/v1/accounts", json={
            "username": "newcomer", "password": "correct horse", "display_name": "新人",
        }), 201)
    )  # fmt: skip
    assert registered == []
    login = {"username": "newcomer", "password": "correct horse", "device_name": "手机"}
    sessions = [
        await _emitted(h, _ok(h.client.post("/api/v1/sessions", json=login), 201)) for _ in range(3)
    ]
    assert sessions == [[], [], []]
    me = await h.login("newcomer")
    other = await h.login("newcomer")
    assert await _emitted(h, _ok(h.call(me, "PATCH", "/api/v1/me",
                                        json={"display_name": "老人"}))) == []  # fmt: skip
    assert await _emitted(h, _ok(h.call(me, "DELETE", f"/api/v1/sessions/{other.device_id}"),
                                 204)) == []  # fmt: skip
    assert await _emitted(h, _ok(h.call(me, "DELETE", "/api/v1/sessions/others"), 204)) == []
    assert await _emitted(h, _ok(h.call(me, "DELETE", "/api/v1/sessions/current"), 204)) == []
