"""Group invitation consent (群聊邀请确认, issue 14, item 5): a user who turns it on is invited,
not added, into groups; they accept (join) or decline."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from qunliao.core.ids import inbox_stream_id
from qunliao.features.conversations import ConversationService
from qunliao.sdk import Client, GroupInvitationReceived, QunliaoError, decode_event
from tests.support.app import Account, Harness

SETTINGS = "/api/v1/me/settings"
INVITATIONS = "/api/v1/group-invitations"


async def _consent(h: Harness, who: Account, on: bool = True) -> None:
    r = await h.call(who, "PATCH", SETTINGS, json={"group_invite_consent": on})
    assert r.status_code == 200 and r.json() == {"group_invite_consent": on}, r.text


async def _incoming(h: Harness, who: Account) -> list[dict[str, Any]]:
    r = await h.call(who, "GET", INVITATIONS)
    assert r.status_code == 200, r.text
    return list(r.json()["incoming"])


async def _member_ids(h: Harness, who: Account, group: str) -> set[str]:
    r = await h.call(who, "GET", f"/api/v1/conversations/{group}/members")
    assert r.status_code == 200, r.text
    return {m["user_id"] for m in r.json()["members"]}


async def test_the_setting_is_off_by_default_and_strictly_typed(h: Harness) -> None:
    alice = await h.user("alice")
    r = await h.call(alice, "GET", SETTINGS)
    assert r.status_code == 200 and r.json() == {"group_invite_consent": False}
    bad_bodies: list[Any] = [
        {"group_invite_consent": "yes"},
        {"group_invite_consent": 1},
        {"group_invite_consent": None},
        {"group_invite_consent": True, "x": 1},
        [True],
        {"group_invite_consent": "\u0000"},
    ]
    for bad in bad_bodies:
        r = await h.call(alice, "PATCH", SETTINGS, json=bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request", (bad, r.text)
    assert (await h.call(alice, "GET", SETTINGS)).json() == {"group_invite_consent": False}
    await _consent(h, alice)
    await _consent(h, alice)  # the same again is fine
    assert (await h.call(alice, "GET", SETTINGS)).json() == {"group_invite_consent": True}
    assert (await h.call(None, "GET", SETTINGS)).status_code == 401
    assert (
        await h.call(None, "PATCH", SETTINGS, json={"group_invite_consent": False})
    ).status_code == 401
    # mine only: another user's setting is untouched
    bob = await h.user("bob")
    assert (await h.call(bob, "GET", SETTINGS)).json() == {"group_invite_consent": False}


async def test_create_invites_who_wants_consent_and_accept_joins(h: Harness) -> None:
    alice, bob, carol = await h.user("alice"), await h.user("bob"), await h.user("carol")
    await _consent(h, bob)
    r = await h.call(
        alice, "POST", "/api/v1/conversations",
        json={"kind": "group", "member_ids": [bob.user_id, carol.user_id], "title": "周末爬山"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    group, invited = r.json()["conversation_id"], r.json()["invited"]
    assert invited == [bob.user_id]
    assert await _member_ids(h, alice, group) == {alice.user_id, carol.user_id}
    assert (await h.call(bob, "GET", f"/api/v1/conversations/{group}")).status_code == 403
    [invitation] = await _incoming(h, bob)
    assert invitation["conversation_id"] == group and invitation["title"] == "周末爬山"
    assert invitation["inviter_id"] == alice.user_id and invitation["state"] == "pending"
    assert invitation["inviter_display_name"].endswith("用户")
    outgoing = (await h.call(alice, "GET", INVITATIONS)).json()["outgoing"]
    assert [i["invitation_id"] for i in outgoing] == [invitation["invitation_id"]]
    events, token = await h.sync_all(bob)
    received = [e for e in events if e["type"] == "group_invitation.received"]
    assert [e["invitation"]["invitation_id"] for e in received] == [invitation["invitation_id"]]
    assert received[0]["conversation_id"] == inbox_stream_id(bob.user_id)
    assert not any(e["conversation_id"] == group for e in events)  # not a member yet

    # a retried add never duplicates: the pending invitation stays the only one
    r = await h.call(
        alice, "POST", f"/api/v1/conversations/{group}/members", json={"user_ids": [bob.user_id]}
    )
    assert r.status_code == 200 and r.json() == {"added": [], "invited": [bob.user_id]}
    r = await h.call(
        carol, "POST", f"/api/v1/conversations/{group}/members", json={"user_ids": [bob.user_id]}
    )
    assert r.json() == {"added": [], "invited": [bob.user_id]}
    assert len(await _incoming(h, bob)) == 1
    assert (await h.sync_all(bob, token))[0] == []

    # only the invitee answers: the inviter gets 403, anyone else 404, no token 401
    url = f"{INVITATIONS}/{invitation['invitation_id']}"
    assert (await h.call(alice, "POST", f"{url}/accept")).status_code == 403
    assert (await h.call(carol, "POST", f"{url}/accept")).status_code == 404
    assert (await h.call(carol, "POST", f"{url}/decline")).status_code == 404
    assert (await h.call(None, "POST", f"{url}/accept")).status_code == 401
    assert (await h.call(bob, "POST", f"{INVITATIONS}/gi_nothing/accept")).status_code == 404
    assert await _member_ids(h, alice, group) == {alice.user_id, carol.user_id}

    r = await h.call(bob, "POST", f"{url}/accept")
    assert r.status_code == 200 and r.json()["state"] == "accepted", r.text
    assert await _member_ids(h, bob, group) == {alice.user_id, bob.user_id, carol.user_id}
    again = await h.call(bob, "POST", f"{url}/accept")
    assert again.status_code == 200 and again.json()["state"] == "accepted"
    r = await h.call(bob, "POST", f"{url}/decline")
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    events, _ = await h.sync_all(bob, token)
    joined = [e for e in events if e["type"] == "members.added"]
    assert [(e["conversation_id"], e["user_ids"], e["by"]) for e in joined] == [
        (group, [bob.user_id], alice.user_id)
    ]
    assert [
        e["invitation"]["state"] for e in events if e["type"] == "group_invitation.answered"
    ] == ["accepted"]
    carol_events, _ = await h.sync_all(carol)
    assert any(
        e["type"] == "members.added" and e["user_ids"] == [bob.user_id] for e in carol_events
    )
    assert not any(e["type"].startswith("group_invitation") for e in carol_events)
    # a member now: a message from bob reaches the group
    assert (await h.send(bob, group, "大家好 hello")).status_code == 201


async def test_add_members_invites_friends_too_and_decline(h: Harness) -> None:
    alice, bob, carol = await h.user("alice"), await h.user("bob"), await h.user("carol")
    r = await h.call(alice, "POST", "/api/v1/friend-requests", json={"user_id": bob.user_id})
    await h.call(bob, "POST", f"/api/v1/friend-requests/{r.json()['request_id']}/accept")
    await _consent(h, bob)
    group = await h.group(alice, carol)
    r = await h.call(
        alice, "POST", f"/api/v1/conversations/{group}/members",
        json={"user_ids": [bob.user_id, carol.user_id]},
    )  # fmt: skip
    assert r.status_code == 200 and r.json() == {"added": [], "invited": [bob.user_id]}
    [invitation] = await _incoming(h, bob)
    url = f"{INVITATIONS}/{invitation['invitation_id']}"
    r = await h.call(bob, "POST", f"{url}/decline")
    assert r.status_code == 200 and r.json()["state"] == "declined"
    assert (await h.call(bob, "POST", f"{url}/decline")).json()["state"] == "declined"
    assert (await h.call(bob, "POST", f"{url}/accept")).status_code == 409
    assert await _member_ids(h, alice, group) == {alice.user_id, carol.user_id}
    # after a decline, a new add is a new invitation
    r = await h.call(
        alice, "POST", f"/api/v1/conversations/{group}/members", json={"user_ids": [bob.user_id]}
    )
    assert r.json()["invited"] == [bob.user_id]
    states = sorted(i["state"] for i in await _incoming(h, bob))
    assert states == ["declined", "pending"]
    # the setting off again: adds are plain adds
    await _consent(h, bob, on=False)
    other = await h.group(carol, bob)
    assert bob.user_id in await _member_ids(h, carol, other)


async def test_a_blocked_inviter_cannot_invite(h: Harness) -> None:
    alice, bob, carol = await h.user("alice"), await h.user("bob"), await h.user("carol")
    await _consent(h, bob)
    assert (await h.call(bob, "PUT", f"/api/v1/blocks/{alice.user_id}")).status_code == 204
    r = await h.call(
        alice, "POST", "/api/v1/conversations",
        json={"kind": "group", "member_ids": [bob.user_id, carol.user_id]},
    )  # fmt: skip
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    group = await h.group(alice, carol)
    r = await h.call(
        alice, "POST", f"/api/v1/conversations/{group}/members", json={"user_ids": [bob.user_id]}
    )
    assert r.status_code == 403
    assert await _incoming(h, bob) == []


async def test_accept_fails_cleanly_when_the_invitation_no_longer_holds(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    carol, dave = await h.user("carol"), await h.user("dave")
    await _consent(h, bob)
    group = await h.group(alice, carol, dave)

    async def invite(by: Account) -> str:
        r = await h.call(
            by, "POST", f"/api/v1/conversations/{group}/members", json={"user_ids": [bob.user_id]}
        )
        assert r.status_code == 200 and r.json()["invited"] == [bob.user_id], r.text
        [pending] = [i for i in await _incoming(h, bob) if i["state"] == "pending"]
        return f"{INVITATIONS}/{pending['invitation_id']}"

    # the inviter left the group: 403, nothing changes (still pending)
    url = await invite(carol)
    assert (
        await h.call(carol, "DELETE", f"/api/v1/conversations/{group}/members/{carol.user_id}")
    ).status_code == 204
    r = await h.call(bob, "POST", f"{url}/accept")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert [i["state"] for i in await _incoming(h, bob)] == ["pending"]
    assert bob.user_id not in await _member_ids(h, alice, group)
    assert (await h.call(bob, "POST", f"{url}/decline")).status_code == 200

    # the group is muted and the inviter is no manager
    url = await invite(dave)
    r = await h.call(alice, "PATCH", f"/api/v1/conversations/{group}", json={"muted_all": True})
    assert r.status_code == 200
    assert (await h.call(bob, "POST", f"{url}/accept")).status_code == 403
    await h.call(alice, "PATCH", f"/api/v1/conversations/{group}", json={"muted_all": False})
    assert (await h.call(bob, "POST", f"{url}/decline")).status_code == 200

    # the group is full: 409
    url = await invite(alice)
    conversations = h.services.need(ConversationService)
    full, conversations._max_members = conversations._max_members, 2  # alice and dave
    try:
        r = await h.call(bob, "POST", f"{url}/accept")
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    finally:
        conversations._max_members = full
    assert bob.user_id not in await _member_ids(h, alice, group)

    # the group no longer exists: 404
    async with h.services.db.write() as tx:
        await tx.conn.execute(
            text("DELETE FROM conversations WHERE conversation_id = :c"), {"c": group}
        )
    r = await h.call(bob, "POST", f"{url}/accept")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    [pending] = [i for i in await _incoming(h, bob) if i["state"] == "pending"]
    assert pending["title"] is None


async def test_invitation_events_reach_the_invitee_alone(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    await _consent(h, bob)
    await h.group(alice, bob)
    inbox = inbox_stream_id(bob.user_id)
    kind = h.services.registry.kind_of(inbox)
    assert kind is not None
    readers = await kind.audience.readers(inbox)
    assert readers.may_see(bob.user_id, 1) and not readers.may_see(alice.user_id, 1)
    assert h.services.registry.event_type("group_invitation.received") is not None
    assert h.services.registry.event_type("group_invitation.answered") is not None


async def test_the_sdk_drives_invitations(h: Harness) -> None:
    """The SDK's helpers against the app in-process: setting, invite, typed event, accept."""
    alice, bob = await h.user("alice"), await h.user("bob")
    transport = h.client._transport  # the harness's in-process ASGI transport
    async with Client("http://testserver", access_token=bob.token, transport=transport) as sdk:
        assert await sdk.settings() == {"group_invite_consent": False}
        assert await sdk.update_settings(group_invite_consent=True) == {
            "group_invite_consent": True
        }
        group = await h.group(alice)
        r = await h.call(
            alice,
            "POST",
            f"/api/v1/conversations/{group}/members",
            json={"user_ids": [bob.user_id]},
        )
        assert r.json()["invited"] == [bob.user_id]
        events = [decode_event(e) for e in (await sdk.sync()).events]
        [received] = [e for e in events if isinstance(e, GroupInvitationReceived)]
        invitation_id = received.invitation["invitation_id"]
        assert [i["invitation_id"] for i in (await sdk.group_invitations())["incoming"]] == [
            invitation_id
        ]
        assert (await sdk.accept_group_invitation(invitation_id))["state"] == "accepted"
        assert (await sdk.conversation(group))["member_count"] == 2
        with pytest.raises(QunliaoError) as caught:
            await sdk.decline_group_invitation(invitation_id)
        assert (caught.value.status, caught.value.code) == (409, "conflict")
