"""Server administration over HTTP: accounts, deactivation, password resets, the audit log; and
users changing their own password."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from qunliao.features.accounts import AccountService
from qunliao.features.admin import AdminService
from tests.support.app import PASSWORD, Account, Harness

NEW_PASSWORD = "新的密码 new password"


async def admin_user(h: Harness, prefix: str = "boss") -> Account:
    boss = await h.user(prefix, display_name="管理员 Admin")
    await h.services.need(AdminService).do_set_admin(None, boss.user_id, True)
    return boss


async def login(h: Harness, username: str, password: str = PASSWORD) -> Any:
    return await h.client.post(
        "/api/v1/sessions",
        json={"username": username, "password": password, "device_name": "again"},
    )


async def audited(h: Harness, boss: Account) -> list[tuple[str, str]]:
    r = await h.call(boss, "GET", "/api/v1/admin/audit", params={"limit": 500})
    assert r.status_code == 200, r.text
    return [(e["action"], e["target_id"]) for e in r.json()["entries"]]


def admin_calls(target: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("GET", "/api/v1/admin/users", {}),
        ("GET", "/api/v1/admin/audit", {}),
        ("POST", f"/api/v1/admin/users/{target}/deactivate", {}),
        ("POST", f"/api/v1/admin/users/{target}/reactivate", {}),
        ("POST", f"/api/v1/admin/users/{target}/password", {"json": {"new_password": "x" * 12}}),
    ]


async def test_only_server_admins_may_administer(h: Harness) -> None:
    boss = await admin_user(h)
    alice = await h.user("alice", display_name="爱丽丝 Alice")
    bob = await h.user("bob")
    for method, path, kwargs in admin_calls(bob.user_id):
        stranger = await h.call(None, method, path, **kwargs)
        assert stranger.status_code == 401, (path, stranger.text)
        assert stranger.json()["error"]["code"] == "unauthorized"
        member = await h.call(alice, method, path, **kwargs)
        assert member.status_code == 403, (path, member.text)
        assert member.json()["error"]["code"] == "forbidden"
    # nothing changed: bob's session and password still work, no audit entries
    assert (await h.call(bob, "GET", "/api/v1/me")).status_code == 200
    assert (await login(h, bob.username)).status_code == 201
    assert await audited(h, boss) == [("user.make_admin", boss.user_id)]  # by the test's setup

    # a revoked admin loses the rights at once
    await h.services.need(AdminService).do_set_admin(None, boss.user_id, False)
    assert (await h.call(boss, "GET", "/api/v1/admin/users")).status_code == 403


async def test_listing_users_with_search_and_paging(h: Harness) -> None:
    boss = await admin_user(h)
    alice = await h.user("alice", display_name="爱丽丝 Alice")
    others = [await h.user("zed", display_name=f"用户 {i}") for i in range(4)]
    r = await h.call(boss, "GET", "/api/v1/admin/users")
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["next_cursor"] is None
    listed = {u["user_id"]: u for u in page["users"]}
    assert set(listed) == {boss.user_id, alice.user_id, *(o.user_id for o in others)}
    assert listed[alice.user_id] == {
        "user_id": alice.user_id,
        "username": alice.username,
        "display_name": "爱丽丝 Alice",
        "is_admin": False,
        "deactivated": False,
        "created_at": h.clock.now_ms(),
    }
    assert listed[boss.user_id]["is_admin"] is True
    names = [u["username"] for u in page["users"]]
    assert names == sorted(names)

    found = await h.call(boss, "GET", "/api/v1/admin/users", params={"q": "爱丽"})
    assert [u["user_id"] for u in found.json()["users"]] == [alice.user_id]

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"q": "zed", "limit": 3} | ({"cursor": cursor} if cursor else {})
        r = await h.call(boss, "GET", "/api/v1/admin/users", params=params)
        assert r.status_code == 200, r.text
        seen += [u["user_id"] for u in r.json()["users"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(o.user_id for o in others) and len(seen) == 4


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": "many"},
        {"cursor": "not a cursor"},
        {"cursor": "YXVkaXQ6MQ"},  # an audit cursor, not a users one
        {"q": "a\x00b"},
        {"q": "x" * 65},
    ],
)
async def test_listing_users_refuses_bad_input(h: Harness, params: dict[str, Any]) -> None:
    boss = await admin_user(h)
    r = await h.call(boss, "GET", "/api/v1/admin/users", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_request"


async def test_deactivation_ends_every_session_and_refuses_logins(h: Harness) -> None:
    boss = await admin_user(h)
    alice = await h.user("alice")
    phone = await h.login(alice.username, "phone")
    bob = await h.user("bob")
    r = await h.call(boss, "POST", f"/api/v1/admin/users/{alice.user_id}/deactivate")
    assert r.status_code == 204, r.text
    for device in (alice, phone):
        assert (await h.call(device, "GET", "/api/v1/me")).status_code == 401
    refused = await login(h, alice.username)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert (await login(h, alice.username, "wrong password")).status_code == 401
    assert (await h.call(bob, "GET", "/api/v1/me")).status_code == 200  # another user: untouched
    listed = await h.call(boss, "GET", "/api/v1/admin/users", params={"q": alice.username})
    assert listed.json()["users"][0]["deactivated"] is True
    # twice is fine (idempotent)
    again = await h.call(boss, "POST", f"/api/v1/admin/users/{alice.user_id}/deactivate")
    assert again.status_code == 204

    r = await h.call(boss, "POST", f"/api/v1/admin/users/{alice.user_id}/reactivate")
    assert r.status_code == 204, r.text
    for device in (alice, phone):  # ended sessions stay ended
        assert (await h.call(device, "GET", "/api/v1/me")).status_code == 401
    fresh = await login(h, alice.username)
    assert fresh.status_code == 201, fresh.text
    token = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
    assert (await h.client.get("/api/v1/me", headers=token)).status_code == 200


async def test_admin_actions_on_unknown_users_and_themselves(h: Harness) -> None:
    boss = await admin_user(h)
    for action in ("deactivate", "reactivate"):
        r = await h.call(boss, "POST", f"/api/v1/admin/users/u_nobody/{action}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await h.call(
        boss, "POST", "/api/v1/admin/users/u_nobody/password", json={"new_password": "x" * 12}
    )
    assert r.status_code == 404
    r = await h.call(boss, "POST", f"/api/v1/admin/users/{boss.user_id}/deactivate")
    assert r.status_code == 400  # an admin cannot lock themselves out
    assert (await h.call(boss, "GET", "/api/v1/me")).status_code == 200
    r = await h.call(boss, "POST", "/api/v1/admin/users/u_%00x/deactivate")
    assert r.status_code == 400


async def test_a_password_reset_ends_the_sessions(h: Harness) -> None:
    boss = await admin_user(h)
    alice = await h.user("alice")
    r = await h.call(
        boss,
        "POST",
        f"/api/v1/admin/users/{alice.user_id}/password",
        json={"new_password": NEW_PASSWORD},
    )
    assert r.status_code == 204, r.text
    assert (await h.call(alice, "GET", "/api/v1/me")).status_code == 401
    assert (await login(h, alice.username)).status_code == 401
    assert (await login(h, alice.username, NEW_PASSWORD)).status_code == 201
    assert (await h.call(boss, "GET", "/api/v1/me")).status_code == 200  # the admin's stays


@pytest.mark.parametrize(
    "body",
    [
        {"new_password": "short"},
        {"new_password": "long enough\x00"},
        {"new_password": 12345678},
        {"new_password": "x" * 2000},
        {"new_password": "long enough", "extra": 1},
        {},
    ],
)
async def test_a_password_reset_refuses_bad_input(h: Harness, body: dict[str, Any]) -> None:
    boss = await admin_user(h)
    alice = await h.user("alice")
    r = await h.call(boss, "POST", f"/api/v1/admin/users/{alice.user_id}/password", json=body)
    assert r.status_code == 400, r.text
    assert (await h.call(alice, "GET", "/api/v1/me")).status_code == 200  # nothing changed
    assert await audited(h, boss) == [("user.make_admin", boss.user_id)]


async def test_the_audit_log_is_newest_first_with_paging(h: Harness) -> None:
    boss = await admin_user(h)
    alice = await h.user("alice")
    bob = await h.user("bob")
    done = [("user.make_admin", boss.user_id)]  # the test's setup, as the CLI
    for path, action, target in [
        (f"/api/v1/admin/users/{alice.user_id}/deactivate", "user.deactivate", alice),
        (f"/api/v1/admin/users/{bob.user_id}/deactivate", "user.deactivate", bob),
        (f"/api/v1/admin/users/{alice.user_id}/reactivate", "user.reactivate", alice),
    ]:
        h.clock.advance(1)
        assert (await h.call(boss, "POST", path)).status_code == 204
        done.append((action, target.user_id))
    h.clock.advance(1)
    r = await h.call(
        boss, "POST", f"/api/v1/admin/users/{bob.user_id}/password", json={"new_password": "x" * 9}
    )
    assert r.status_code == 204
    done.append(("user.reset_password", bob.user_id))
    await h.services.need(AdminService).do_set_admin(None, alice.user_id, True)  # the CLI
    done.append(("user.make_admin", alice.user_id))

    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        r = await h.call(boss, "GET", "/api/v1/admin/audit", params=params)
        assert r.status_code == 200, r.text
        assert len(r.json()["entries"]) <= 2
        entries += r.json()["entries"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert [(e["action"], e["target_id"]) for e in entries] == done[::-1]
    assert [e["actor_id"] for e in entries] == [None] + [boss.user_id] * 4 + [None]  # CLI: null
    times = [e["at"] for e in entries]
    assert times == sorted(times, reverse=True)
    assert set(entries[0]) == {"at", "actor_id", "action", "target_id"}

    for params in ({"limit": 0}, {"cursor": "nope"}, {"cursor": "dXNlcnM6YWxpY2U"}):
        r = await h.call(boss, "GET", "/api/v1/admin/audit", params=params)
        assert r.status_code == 400, (params, r.text)


async def test_changing_my_password_logs_out_my_other_devices(h: Harness) -> None:
    alice = await h.user("alice")
    phone = await h.login(alice.username, "phone")
    bob = await h.user("bob")
    r = await h.call(
        alice,
        "POST",
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert r.status_code == 204, r.text
    assert (await h.call(alice, "GET", "/api/v1/me")).status_code == 200  # this one stays
    assert (await h.call(phone, "GET", "/api/v1/me")).status_code == 401
    assert (await h.call(bob, "GET", "/api/v1/me")).status_code == 200  # another user's stays
    assert (await login(h, alice.username)).status_code == 401
    assert (await login(h, alice.username, NEW_PASSWORD)).status_code == 201
    # never an admin action: nothing in the audit log
    boss = await admin_user(h)
    assert await audited(h, boss) == [("user.make_admin", boss.user_id)]


async def test_changing_my_password_needs_the_current_one(h: Harness) -> None:
    alice = await h.user("alice")
    phone = await h.login(alice.username, "phone")
    wrong = await h.call(
        alice,
        "POST",
        "/api/v1/me/password",
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
    )
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
    stranger = await h.call(
        None,
        "POST",
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert stranger.status_code == 401
    for body in (
        {"current_password": PASSWORD, "new_password": "short"},
        {"current_password": PASSWORD, "new_password": "long enough\x00"},
        {"current_password": PASSWORD},
        {"current_password": PASSWORD, "new_password": None},
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "x": 1},
    ):
        r = await h.call(alice, "POST", "/api/v1/me/password", json=body)
        assert r.status_code == 400, (body, r.text)
    # nothing changed
    assert (await h.call(phone, "GET", "/api/v1/me")).status_code == 200
    assert (await login(h, alice.username)).status_code == 201


async def test_sessions_ended_by_another_process_close_their_sockets_here(h: Harness) -> None:
    """The periodic check: a device revoked in storage by someone else (the CLI) whose socket
    is open here is closed with 4401."""
    alice = await h.user("alice")
    bob = await h.user("bob")
    closed: list[list[str]] = []
    accounts = h.services.need(AccountService)
    accounts._in_use = lambda: {alice.device_id, bob.device_id}  # their sockets "open" here
    accounts._close_here = closed.append
    await accounts.close_revoked_sockets()
    assert closed == []
    async with h.services.db.write() as tx:  # as the CLI does it: storage only
        await tx.conn.execute(
            text("UPDATE devices SET revoked_at = :now WHERE device_id = :d"),
            {"now": h.clock.now_ms(), "d": alice.device_id},
        )
    h.clock.advance(5)
    await accounts.close_revoked_sockets()
    assert closed == [[alice.device_id]]
