"""Login and registration limits per client address (issue 14, item 4): they stop guessers and
mass registration, and an attacker cannot use them to lock a real user out."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qunliao.settings import Settings
from tests.support.app import PASSWORD, Harness, running_app
from tests.support.services import database_url, service_url

ATTACKER = "203.0.113.66"
OWNER = "198.51.100.7"
DEFAULTS = Settings()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post(
        "/api/v1/sessions",
        json={"username": username, "password": password, "device_name": "手机 phone"},
    )


async def register(client: httpx.AsyncClient, username: str) -> httpx.Response:
    return await client.post(
        "/api/v1/accounts",
        json={"username": username, "password": PASSWORD, "display_name": f"{username} 用户"},
    )


def assert_limited(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1


async def test_an_attacker_cannot_lock_the_owner_out(h: Harness) -> None:
    alice = await h.user("alice")
    async with h.client_from(ATTACKER) as attacker, h.client_from(OWNER) as owner:
        codes = [(await login(attacker, alice.username, "wrong 密码")).status_code
                 for _ in range(50)]  # fmt: skip
        pair_limit = DEFAULTS.login_failures_per_account_address_per_15min
        assert codes == [401] * pair_limit + [429] * (50 - pair_limit)
        assert_limited(await login(attacker, alice.username, "wrong 密码"))
        r = await login(owner, alice.username, PASSWORD)
        assert r.status_code == 201, r.text
        r = await login(h.client, alice.username, PASSWORD)  # the harness's address too
        assert r.status_code == 201, r.text


async def test_a_distributed_attack_spares_the_owner(h: Harness) -> None:
    """Once the account's own failures run out, addresses that failed against it are refused,
    each new address gets one guess, and an address that never failed still logs in."""
    alice = await h.user("alice")
    per_account = DEFAULTS.login_failures_per_account_per_min
    per_pair = DEFAULTS.login_failures_per_account_address_per_15min
    bots = [f"203.0.113.{n}" for n in range(1, per_account // per_pair + 1)]
    for bot in bots:
        async with h.client_from(bot) as client:
            for _ in range(per_pair):
                assert (await login(client, alice.username, "guess guess")).status_code == 401
    async with h.client_from(bots[0]) as client:
        assert_limited(await login(client, alice.username, PASSWORD))
    async with h.client_from("192.0.2.200") as newcomer:
        assert (await login(newcomer, alice.username, "guess guess")).status_code == 401
        assert_limited(await login(newcomer, alice.username, "guess again"))
    async with h.client_from(OWNER) as owner:
        assert (await login(owner, alice.username, PASSWORD)).status_code == 201
    bob = await h.user("bob")  # other accounts are not under attack
    async with h.client_from("192.0.2.200") as newcomer:
        assert (await login(newcomer, bob.username, PASSWORD)).status_code == 201


async def test_the_21st_failure_from_an_address_is_429(h: Harness) -> None:
    alice = await h.user("alice")
    limit = DEFAULTS.login_failures_per_address_per_min
    assert limit == 20
    async with h.client_from(ATTACKER) as attacker, h.client_from(OWNER) as owner:
        for n in range(limit):  # a different name each time: only the address limit counts
            assert (await login(attacker, f"nobody{n}", "wrong 密码")).status_code == 401
        assert_limited(await login(attacker, "nobody-else", "wrong 密码"))
        assert_limited(await login(attacker, alice.username, PASSWORD))
        assert (await login(owner, alice.username, PASSWORD)).status_code == 201
        assert (await login(owner, "nobody0", "wrong 密码")).status_code == 401
        h.clock.advance(60)
        assert (await login(attacker, alice.username, PASSWORD)).status_code == 201


async def test_right_passwords_are_never_limited(h: Harness) -> None:
    users = [await h.user(f"user{n}_") for n in range(30)]
    async with h.client_from(OWNER) as office:
        for user in users:
            r = await login(office, user.username, PASSWORD)
            assert r.status_code == 201, r.text
        # successes gave their tokens back: the address still has every failure left
        for n in range(DEFAULTS.login_failures_per_address_per_min):
            assert (await login(office, f"nobody{n}", "wrong 密码")).status_code == 401
        assert_limited(await login(office, users[0].username, PASSWORD))


async def test_registrations_per_address(db_url: str) -> None:
    limit = DEFAULTS.registrations_per_address_per_min
    async with running_app(db_url, registrations_per_address_per_min=limit) as h:
        async with h.client_from(ATTACKER) as attacker, h.client_from(OWNER) as owner:
            for n in range(limit):
                assert (await register(attacker, f"bulk{n}")).status_code == 201
            assert_limited(await register(attacker, "bulk-extra"))
            r = await attacker.post("/api/v1/accounts", json={"username": "Bad Name",
                                    "password": "x", "display_name": "坏"})  # fmt: skip
            assert r.status_code == 400  # bad input is refused before it counts
            assert (await register(owner, "someone_else")).status_code == 201
            assert (await login(attacker, "bulk-extra", PASSWORD)).status_code == 401  # not made
            h.clock.advance(60 / limit + 0.01)
            assert (await register(attacker, "bulk-extra")).status_code == 201
            assert_limited(await register(attacker, "bulk-extra2"))


async def test_forwarded_headers_count_only_from_trusted_proxies(db_url: str) -> None:
    limit = DEFAULTS.login_failures_per_address_per_min
    async with running_app(db_url, trusted_proxies="10.0.0.0/8, fd00::/8") as h:
        # Not from a proxy: X-Forwarded-For is ignored, the peer is counted.
        async with h.client_from(ATTACKER) as attacker:
            for n in range(limit):
                forged = {"X-Forwarded-For": f"192.0.2.{n}", "Forwarded": f"for=192.0.2.{n}"}
                body = {"username": f"nobody{n}", "password": "wrong 密码"}
                r = await attacker.post("/api/v1/sessions", headers=forged, json=body)
                assert r.status_code == 401
            assert_limited(await login(attacker, "nobody", "wrong 密码"))
        # Through the proxy: each client is counted by itself, a forged left part is ignored.
        async with h.client_from("10.0.0.2", **{"X-Forwarded-For": "198.51.100.20"}) as one:
            for n in range(limit):
                assert (await login(one, f"nobody{n}", "wrong 密码")).status_code == 401
            assert_limited(await login(one, "nobody", "wrong 密码"))
        spoofing = {"X-Forwarded-For": "192.0.2.99, 198.51.100.20, 10.0.0.9"}
        async with h.client_from("10.0.0.2", **spoofing) as one_again:
            assert_limited(await login(one_again, "nobody", "wrong 密码"))
        async with h.client_from("10.0.0.2", **{"X-Forwarded-For": "198.51.100.21"}) as other:
            assert (await login(other, "nobody", "wrong 密码")).status_code == 401
        alice = await h.user("alice")
        async with h.client_from("10.0.0.2") as proxy_itself:
            assert (await login(proxy_itself, alice.username, PASSWORD)).status_code == 201


async def test_without_trusted_proxies_forwarded_headers_are_ignored(h: Harness) -> None:
    limit = DEFAULTS.login_failures_per_address_per_min
    async with h.client_from("10.0.0.2") as client:
        for n in range(limit):
            forged = {"X-Forwarded-For": f"198.51.100.{n}"}
            body = {"username": f"nobody{n}", "password": "wrong 密码"}
            r = await client.post("/api/v1/sessions", headers=forged, json=body)
            assert r.status_code == 401
        assert_limited(await login(client, "nobody", "wrong 密码"))


async def test_rate_limits_off_lifts_every_limit(db_url: str) -> None:
    async with running_app(db_url, rate_limits="off", registrations_per_address_per_min=20,
                           rate_limit_per_s=1, rate_limit_burst=1) as h:  # fmt: skip
        async with h.client_from(ATTACKER) as client:
            for n in range(30):
                assert (await register(client, f"many{n}")).status_code == 201
            for _ in range(30):
                assert (await login(client, "many0", "wrong 密码")).status_code == 401
            assert (await login(client, "many0", PASSWORD)).status_code == 201
        alice, bob = await h.user("alice"), await h.user("bob")
        conversation_id = await h.direct(alice, bob)
        for n in range(20):
            r = await h.send(alice, conversation_id, f"消息 {n}")
            assert r.status_code == 201, r.text
        for _ in range(20):
            r = await h.call(alice, "POST", f"/api/v1/conversations/{conversation_id}/read",
                             json={"seq": 1})  # fmt: skip
            assert r.status_code == 204, r.text


async def test_login_limits_are_shared_through_a_redis_bus(db_url: str, tmp_path: Path) -> None:
    """Two gateways on one Redis count one address's failures together."""
    redis_url = service_url("redis")
    address = f"2001:db8:{secrets.randbelow(65536):x}:{secrets.randbelow(65536):x}::1"
    limit = DEFAULTS.login_failures_per_address_per_min
    async with (
        running_app(db_url, bus_url=redis_url) as one,
        running_app(f"sqlite:///{tmp_path / 'other.db'}", bus_url=redis_url) as two,
    ):
        async with one.client_from(address) as first, two.client_from(address) as second:
            for n in range(limit):
                client = first if n % 2 else second
                assert (await login(client, f"nobody{n}", "wrong 密码")).status_code == 401
            assert_limited(await login(first, "nobody", "wrong 密码"))
            assert_limited(await login(second, "nobody", "wrong 密码"))


async def test_an_unreachable_redis_falls_back_to_local_limits(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    limit = DEFAULTS.login_failures_per_address_per_min
    async with running_app(db_url, bus_url="redis://127.0.0.1:1/0") as h:
        alice = await h.user("alice")
        async with h.client_from(ATTACKER) as attacker, h.client_from(OWNER) as owner:
            for n in range(limit):
                assert (await login(attacker, f"nobody{n}", "wrong 密码")).status_code == 401
            assert_limited(await login(attacker, "nobody", "wrong 密码"))
            assert (await login(owner, alice.username, PASSWORD)).status_code == 201
    assert any("redis unreachable" in r.getMessage() for r in caplog.records)


async def test_concurrent_attempts_cannot_slip_past_the_limits(db_url: str) -> None:
    limit = DEFAULTS.registrations_per_address_per_min
    async with running_app(db_url, registrations_per_address_per_min=limit) as h:
        async with h.client_from(ATTACKER) as attacker:
            made = await asyncio.gather(*(register(attacker, f"rush{n}") for n in range(40)))
            assert sorted(r.status_code for r in made) == [201] * limit + [429] * (40 - limit)
            tried = await asyncio.gather(
                *(login(attacker, f"rush{n}", "wrong 密码") for n in range(40))
            )
            failures = DEFAULTS.login_failures_per_address_per_min
            codes = sorted(r.status_code for r in tried)
            assert codes == [401] * failures + [429] * (40 - failures)
