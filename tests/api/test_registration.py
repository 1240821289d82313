"""The registration policy (`registration` = open | invite | closed), invite codes, and
GET /api/v1/server (issue 15)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from qunliao import __version__
from qunliao.core.errors import ApiError
from qunliao.features.accounts import AccountService, Invites
from tests.support.app import PASSWORD, Account, Harness, running_app
from tests.support.services import database_url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


async def register(
    client: httpx.AsyncClient, username: str, invite_code: str | None = None, **extra: Any
) -> httpx.Response:
    body: dict[str, Any] = {
        "username": username,
        "password": PASSWORD,
        "display_name": f"{username} 新用户",
        **extra,
    }
    if invite_code is not None:
        body["invite_code"] = invite_code
    return await client.post("/api/v1/accounts", json=body)


async def exists(h: Harness, username: str) -> bool:
    r = await h.client.post("/api/v1/sessions", json={"username": username, "password": PASSWORD})
    return r.status_code == 201


def assert_forbidden(r: httpx.Response, says: str) -> None:
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "forbidden"
    assert says in r.json()["error"]["message"]


async def make_admin(h: Harness, who: Account) -> None:
    """Sets the server-admin flag directly (the admin commands come from other work)."""
    async with h.services.db.write() as tx:
        await tx.conn.execute(
            text("UPDATE users SET is_admin = :yes WHERE user_id = :user_id"),
            {"yes": True, "user_id": who.user_id},
        )


async def new_code(h: Harness, uses: int = 1, expires_in_s: int | None = None) -> str:
    made = await h.services.need(Invites).do_create(
        created_by=None, uses=uses, expires_in_s=expires_in_s
    )
    return str(made["invite_code"])


async def test_server_info_needs_no_sign_in(h: Harness) -> None:
    r = await h.client.get("/api/v1/server")
    assert r.status_code == 200
    assert r.json() == {"registration": "open", "version": __version__}


@pytest.mark.parametrize("policy", ["invite", "closed"])
async def test_server_info_tells_the_policy(db_url: str, policy: str) -> None:
    async with running_app(db_url, registration=policy) as h:
        r = await h.client.get("/api/v1/server")
        assert r.json() == {"registration": policy, "version": __version__}


async def test_open_registration_ignores_an_invite_code(h: Harness) -> None:
    r = await register(h.client, "opendoor", invite_code="no-such-code 邀请码")
    assert r.status_code == 201, r.text
    assert await exists(h, "opendoor")


async def test_closed_registration_is_403_and_creates_nothing(db_url: str) -> None:
    async with running_app(db_url, registration="closed") as h:
        r = await register(h.client, "outsider")
        assert_forbidden(r, "closed")
        code = await new_code(h)  # a code does not open a closed server
        assert_forbidden(await register(h.client, "outsider", invite_code=code), "closed")
        assert not await exists(h, "outsider")
        r = await register(h.client, "Bad Name")  # bad input is still 400 first
        assert r.status_code == 400
        # The operator's CLI (no client address) still creates accounts.
        accounts = h.services.need(AccountService)
        await accounts.do_register("by_admin", PASSWORD, "管理员建的 by admin")
        assert await exists(h, "by_admin")


async def test_invite_registration_takes_a_valid_code(db_url: str) -> None:
    async with running_app(db_url, registration="invite") as h:
        code = await new_code(h, uses=2, expires_in_s=3600)
        assert (await register(h.client, "invited1", code)).status_code == 201
        assert (await register(h.client, "invited2", code)).status_code == 201
        assert await exists(h, "invited1") and await exists(h, "invited2")
        assert_forbidden(await register(h.client, "invited3", code), "used up")
        assert not await exists(h, "invited3")
        [listed] = await h.services.need(Invites).list_invites(limit=10, usable_only=False)
        assert (listed["used"], listed["uses"], listed["usable"]) == (2, 2, False)


async def test_unusable_codes_are_403_and_create_nothing(db_url: str) -> None:
    async with running_app(db_url, registration="invite") as h:
        invites = h.services.need(Invites)
        expiring = await new_code(h, expires_in_s=60)
        revoked = await invites.do_create(created_by=None)
        await invites.do_revoke(revoked["invite_id"])
        spent = await new_code(h)
        assert (await register(h.client, "first_user", spent)).status_code == 201
        h.clock.advance(61)
        cases = {
            None: "needs an invite code",
            "": "needs an invite code",
            "not-a-code": "unknown",
            "未知的邀请码": "unknown",
            expiring: "expired",
            revoked["invite_code"]: "revoked",
            spent: "used up",
        }
        for n, (code, says) in enumerate(cases.items()):
            assert_forbidden(await register(h.client, f"hopeful{n}", code), says)
            assert not await exists(h, f"hopeful{n}")


async def test_bad_input_is_400_before_the_policy_and_the_limit_after_it(db_url: str) -> None:
    async with running_app(db_url, registration="invite", registrations_per_address_per_min=1) as h:
        code = await new_code(h, uses=5)
        r = await register(h.client, "x")  # no code and a bad username: the 400 wins
        assert r.status_code == 400
        r = await register(h.client, "good_name", code, extra=1)
        assert r.status_code == 400
        r = await h.client.post(
            "/api/v1/accounts",
            json={"username": "good_name", "password": PASSWORD, "display_name": "x",
                  "invite_code": 12345},
        )  # fmt: skip
        assert r.status_code == 400
        r = await register(h.client, "good_name", "x" * 129)
        assert r.status_code == 400
        r = await register(h.client, "good_name", "nul\x00code")
        assert r.status_code == 400
        for n in range(3):  # refused by the policy: the per-address limit is not used up
            assert_forbidden(await register(h.client, f"guess{n}", f"guess{n}"), "unknown")
        assert (await register(h.client, "good_name", code)).status_code == 201
        r = await register(h.client, "good_name2", code)
        assert r.status_code == 429  # now the limit
        assert not await exists(h, "good_name2")
        [listed] = await h.services.need(Invites).list_invites(limit=10, usable_only=True)
        assert listed["used"] == 1  # the limited request took no use


async def test_a_failed_registration_does_not_use_the_code(db_url: str) -> None:
    async with running_app(db_url, registration="invite") as h:
        code = await new_code(h)
        await h.services.need(AccountService).do_register("taken", PASSWORD, "占用 taken")
        r = await register(h.client, "taken", code)
        assert r.status_code == 409
        assert (await register(h.client, "not_taken", code)).status_code == 201


async def test_the_last_use_cannot_be_taken_twice(db_url: str) -> None:
    async with running_app(db_url, registration="invite") as h:
        code = await new_code(h)
        first, second = await asyncio.gather(
            register(h.client, "racer_a", code), register(h.client, "racer_b", code)
        )
        assert sorted([first.status_code, second.status_code]) == [201, 403]
        assert [await exists(h, "racer_a"), await exists(h, "racer_b")].count(True) == 1

        # The same race in the database itself: two write transactions open at once, both
        # taking the one use (on PostgreSQL the second waits for the first's row lock).
        code = await new_code(h)
        invites = h.services.need(Invites)

        async def take() -> bool:
            async with h.services.db.write() as tx:
                try:
                    await invites.take_use(tx.conn, code)
                except ApiError:
                    return False
                await asyncio.sleep(0.05)  # hold the transaction open across the other's take
                return True

        assert sorted(await asyncio.gather(take(), take())) == [False, True]


async def test_only_server_admins_make_invites(db_url: str) -> None:
    async with running_app(db_url, registration="invite") as h:
        accounts = h.services.need(AccountService)
        await accounts.do_register("boss", PASSWORD, "老板 Boss")
        await accounts.do_register("staff", PASSWORD, "员工 Staff")
        boss, staff = await h.login("boss"), await h.login("staff")
        await make_admin(h, boss)

        r = await h.client.post("/api/v1/admin/invites", json={})
        assert r.status_code == 401
        for body in ({}, {"uses": 5, "expires_in_s": 3600}):
            r = await h.call(staff, "POST", "/api/v1/admin/invites", json=body)
            assert r.status_code == 403, r.text
            assert r.json()["error"]["code"] == "forbidden"
        assert (await h.call(staff, "GET", "/api/v1/admin/invites")).status_code == 403
        assert await h.services.need(Invites).list_invites(limit=10, usable_only=False) == []

        r = await h.call(boss, "POST", "/api/v1/admin/invites", json={"uses": 2})
        assert r.status_code == 201, r.text
        made = r.json()
        assert made["uses"] == 2 and made["expires_at"] is None
        assert (await register(h.client, "newcomer", made["invite_code"])).status_code == 201

        r = await h.call(boss, "GET", "/api/v1/admin/invites")
        [listed] = r.json()["invites"]
        assert listed["invite_id"] == made["invite_id"]
        assert (listed["used"], listed["created_by"], listed["usable"]) == (1, boss.user_id, True)
        assert "invite_code" not in listed  # stored hashed: shown once, when made

        path = f"/api/v1/admin/invites/{made['invite_id']}"
        assert (await h.call(staff, "DELETE", path)).status_code == 403
        assert (await h.call(boss, "DELETE", path)).status_code == 204
        assert (await h.call(boss, "DELETE", path)).status_code == 204  # again: still revoked
        assert_forbidden(await register(h.client, "late", made["invite_code"]), "revoked")
        r = await h.call(boss, "DELETE", "/api/v1/admin/invites/inv_nope")
        assert r.status_code == 404
        r = await h.call(boss, "DELETE", f"/api/v1/admin/invites/{made['invite_code']}")
        assert r.status_code == 404  # a code is never accepted in a URL
        r = await h.call(boss, "GET", "/api/v1/admin/invites", params={"usable": "true"})
        assert r.json()["invites"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"uses": 0},
        {"uses": -1},
        {"uses": 1_000_001},
        {"uses": "3"},
        {"uses": True},
        {"uses": 1.5},
        {"uses": None},
        {"expires_in_s": 0},
        {"expires_in_s": 10**12},
        {"expires_in_s": "7d"},
        {"code": "我自己选的"},
    ],
)
async def test_bad_invite_requests_are_400(h: Harness, body: dict[str, Any]) -> None:
    boss = await h.user("boss")
    await make_admin(h, boss)
    r = await h.call(boss, "POST", "/api/v1/admin/invites", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_request"
    assert await h.services.need(Invites).list_invites(limit=10, usable_only=False) == []
    r = await h.call(boss, "GET", "/api/v1/admin/invites", params={"limit": 0})
    assert r.status_code == 400


async def test_invite_routes_are_in_openapi(h: Harness) -> None:
    paths = (await h.client.get("/openapi.json")).json()["paths"]
    assert {"201", "400", "401", "403"} <= set(paths["/api/v1/admin/invites"]["post"]["responses"])
    assert "403" in paths["/api/v1/accounts"]["post"]["responses"]
    assert "get" in paths["/api/v1/server"]
