"""Accounts, sessions (devices) and profiles."""

from __future__ import annotations

import pytest

from tests.support.app import PASSWORD, Harness


async def test_register_login_me(h: Harness) -> None:
    alice = await h.user("alice", display_name="爱丽丝 Alice")
    r = await h.call(alice, "GET", "/api/v1/me")
    assert r.status_code == 200
    assert r.json()["display_name"] == "爱丽丝 Alice"
    assert r.json()["device_id"] == alice.device_id


async def test_username_taken_is_conflict(h: Harness) -> None:
    alice = await h.user("alice")
    r = await h.client.post(
        "/api/v1/accounts",
        json={"username": alice.username, "password": PASSWORD, "display_name": "x"},
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "password": PASSWORD, "display_name": "x"},
        {"username": "Upper", "password": PASSWORD, "display_name": "x"},
        {"username": "good_name", "password": "short", "display_name": "x"},
        {"username": "good_name", "password": PASSWORD, "display_name": ""},
        {"username": "good_name", "password": PASSWORD},
        {"username": 5, "password": PASSWORD, "display_name": "x"},
        {"username": "good_name", "password": PASSWORD, "display_name": "x", "extra": 1},
    ],
)
async def test_bad_registration_is_400_and_creates_nothing(h: Harness, body: dict) -> None:
    r = await h.client.post("/api/v1/accounts", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_request"
    r = await h.client.post(
        "/api/v1/sessions", json={"username": "good_name", "password": PASSWORD}
    )
    assert r.status_code == 401


async def test_malformed_json_is_400(h: Harness) -> None:
    r = await h.client.post(
        "/api/v1/accounts", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_request"


async def test_wrong_password_is_401(h: Harness) -> None:
    alice = await h.user("alice")
    for username in (alice.username, "nobody_here"):
        r = await h.client.post(
            "/api/v1/sessions", json={"username": username, "password": "wrong password"}
        )
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"


async def test_each_login_is_a_device_and_logout_revokes_at_once(h: Harness) -> None:
    alice = await h.user("alice")
    phone = await h.login(alice.username, "phone")
    assert phone.device_id != alice.device_id
    r = await h.call(alice, "GET", "/api/v1/sessions")
    assert {d["device_id"] for d in r.json()["devices"]} == {alice.device_id, phone.device_id}
    assert await h.call(phone, "DELETE", "/api/v1/sessions/current") is not None
    r = await h.call(phone, "GET", "/api/v1/me")
    assert r.status_code == 401
    r = await h.call(alice, "GET", "/api/v1/me")
    assert r.status_code == 200


async def test_log_out_all_other_devices(h: Harness) -> None:
    alice = await h.user("alice")
    others = [await h.login(alice.username, f"d{i}") for i in range(3)]
    r = await h.call(alice, "DELETE", "/api/v1/sessions/others")
    assert r.status_code == 204
    for device in others:
        assert (await h.call(device, "GET", "/api/v1/me")).status_code == 401
    assert (await h.call(alice, "GET", "/api/v1/me")).status_code == 200


async def test_cannot_revoke_another_users_device(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    r = await h.call(alice, "DELETE", f"/api/v1/sessions/{bob.device_id}")
    assert r.status_code == 404
    assert (await h.call(bob, "GET", "/api/v1/me")).status_code == 200


async def test_missing_or_bad_token_is_401(h: Harness) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        r = await h.client.get("/api/v1/conversations", headers=headers)
        assert r.status_code == 401
        assert r.json() == {
            "error": {"code": "unauthorized", "message": r.json()["error"]["message"]}
        }


async def test_profile_update_and_lookup(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    r = await h.call(alice, "PATCH", "/api/v1/me", json={"display_name": "王小明"})
    assert r.status_code == 200 and r.json()["display_name"] == "王小明"
    r = await h.call(bob, "GET", f"/api/v1/users/{alice.user_id}")
    assert r.json()["display_name"] == "王小明"
    r = await h.call(bob, "GET", "/api/v1/users/u_missing")
    assert r.status_code == 404
    r = await h.call(alice, "PATCH", "/api/v1/me", json={"display_name": "   "})
    assert r.status_code == 400


async def test_password_guessing_is_rate_limited(h: Harness) -> None:
    alice = await h.user("alice")
    codes = []
    for _ in range(6):  # 5 failures per account and address (the harness's login succeeded)
        r = await h.client.post(
            "/api/v1/sessions", json={"username": alice.username, "password": "guess guess"}
        )
        codes.append(r.status_code)
    assert codes[:5] == [401] * 5 and codes[5] == 429
    assert "Retry-After" in r.headers
    h.clock.advance(15 * 60 / 5 + 1)  # one failure is forgiven every 3 minutes
    r = await h.client.post("/api/v1/sessions", json={"username": alice.username,
                                                     "password": PASSWORD})  # fmt: skip
    assert r.status_code == 201
