"""Devices' last_seen_at (kept in memory, written in batches) and the session idle timeout."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import event, text
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from qunliao.app import build_services, create_app
from qunliao.core.clock import FakeClock
from qunliao.features.accounts import AccountService
from qunliao.features.accounts.activity import GRANULARITY_MS, STORED_LAG_MS
from qunliao.settings import Settings
from tests.support.app import PASSWORD, Account, Harness, running_app
from tests.support.services import database_url

IDLE_TIMEOUT_S = 600
# Past the timeout, and past the allowance for uses other processes have not stored yet.
IDLE_EXPIRED_S = IDLE_TIMEOUT_S + STORED_LAG_MS / 1000 + 1


def accounts_of(h: Harness) -> AccountService:
    return h.services.need(AccountService)


async def stored_last_seen(h: Harness, device_id: str) -> int:
    async with h.services.db.read() as conn:
        row = await conn.execute(
            text("SELECT last_seen_at FROM devices WHERE device_id = :d"), {"d": device_id}
        )
        return int(row.scalar_one())


async def listed(h: Harness, who: Account) -> dict[str, dict[str, Any]]:
    r = await h.call(who, "GET", "/api/v1/sessions")
    assert r.status_code == 200, r.text
    return {d["device_id"]: d for d in r.json()["devices"]}


@pytest.fixture(params=["sqlite", "postgres"])
async def idle_h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """The app with session_idle_timeout set (SQLite and PostgreSQL)."""
    with database_url(request.param, tmp_path) as url:
        async with running_app(url, session_idle_timeout=IDLE_TIMEOUT_S) as harness:
            yield harness


async def test_last_seen_at_moves_with_use_and_is_written_by_a_flush(h: Harness) -> None:
    alice = await h.user("alice")
    logged_in_at = h.clock.now_ms()
    assert (await listed(h, alice))[alice.device_id]["last_seen_at"] == logged_in_at
    h.clock.advance(120)
    used_at = h.clock.now_ms()
    assert (await h.call(alice, "GET", "/api/v1/me")).status_code == 200
    # Memory answers at once; storage hears of it at the next flush.
    assert (await listed(h, alice))[alice.device_id]["last_seen_at"] == used_at
    assert await stored_last_seen(h, alice.device_id) == logged_in_at
    await accounts_of(h).flush_last_seen()
    assert await stored_last_seen(h, alice.device_id) == used_at


async def test_uses_are_not_a_write_each_and_within_the_granularity_write_once(
    h: Harness,
) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    conversation = await h.direct(alice, bob)
    updates: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE DEVICES"):
            updates.append(statement)

    engine = h.services.db.write_engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        h.clock.advance(GRANULARITY_MS / 1000 + 1)
        for i in range(5):
            h.clock.advance(1)
            assert (await h.send(alice, conversation, f"第{i}条 message {i}")).status_code == 201
            assert (await h.call(bob, "GET", "/api/v1/conversations")).status_code == 200
        assert updates == []  # no request wrote its device's last use
        await accounts_of(h).flush_last_seen()
        assert len(updates) == 1  # both devices, one batched statement
        last_use = h.clock.now_ms()
        assert await stored_last_seen(h, alice.device_id) == last_use
        assert await stored_last_seen(h, bob.device_id) == last_use
        for _ in range(5):  # within the granularity of what is stored: nothing to write
            h.clock.advance(1)
            assert (await h.call(alice, "GET", "/api/v1/me")).status_code == 200
        await accounts_of(h).flush_last_seen()
        assert len(updates) == 1
        assert (await listed(h, alice))[alice.device_id]["last_seen_at"] == h.clock.now_ms()
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def test_shutdown_writes_what_is_only_in_memory(tmp_path: Path) -> None:
    with database_url("sqlite", tmp_path) as url:
        async with running_app(url) as h:
            alice = await h.user("alice")
            h.clock.advance(3600)
            assert (await h.call(alice, "GET", "/api/v1/me")).status_code == 200
            used_at = h.clock.now_ms()
        async with running_app(url) as again:  # a fresh process reads storage
            assert await stored_last_seen(again, alice.device_id) == used_at


async def test_the_device_list_shows_only_my_devices(h: Harness) -> None:
    alice, bob = await h.user("alice"), await h.user("bob")
    phone = await h.login(alice.username, "手机 phone")
    h.clock.advance(90)
    assert (await h.call(phone, "GET", "/api/v1/me")).status_code == 200
    mine = await listed(h, alice)
    assert set(mine) == {alice.device_id, phone.device_id}
    assert mine[phone.device_id]["last_seen_at"] == h.clock.now_ms()
    assert [mine[alice.device_id]["current"], mine[phone.device_id]["current"]] == [True, False]
    assert set(await listed(h, bob)) == {bob.device_id}
    assert (await h.call(None, "GET", "/api/v1/sessions")).status_code == 401


async def test_tokens_never_idle_out_by_default(h: Harness) -> None:
    alice = await h.user("alice")
    h.clock.advance(365 * 86_400)
    assert (await h.call(alice, "GET", "/api/v1/me")).status_code == 200


async def test_an_idle_token_is_refused_and_a_used_one_lives(idle_h: Harness) -> None:
    h = idle_h
    alice = await h.user("alice", display_name="爱丽丝 Alice")
    laptop = await h.login(alice.username, "笔记本 laptop")
    for round_ in range(8):  # 8 × 500 s, far past the timeout, used all along
        h.clock.advance(500)
        assert (await h.call(alice, "GET", "/api/v1/me")).status_code == 200
        if round_ % 2:
            await accounts_of(h).flush_last_seen()
    # The laptop was not used since it logged in: refused, over HTTP and in the list.
    r = await h.call(laptop, "GET", "/api/v1/me")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert set(await listed(h, alice)) == {alice.device_id}
    # Refusing it does not count as a use.
    assert (await h.call(laptop, "GET", "/api/v1/conversations")).status_code == 401
    # Alice now goes idle too.
    h.clock.advance(IDLE_EXPIRED_S)
    assert (await h.call(alice, "GET", "/api/v1/me")).status_code == 401
    # Logging in again makes a fresh device that works.
    fresh = await h.login(alice.username, "phone")
    assert (await h.call(fresh, "GET", "/api/v1/me")).status_code == 200


async def test_the_idle_check_uses_memory_newer_than_storage(idle_h: Harness) -> None:
    h = idle_h
    alice = await h.user("alice")
    h.clock.advance(IDLE_TIMEOUT_S - 1)
    assert (await h.call(alice, "GET", "/api/v1/me")).status_code == 200  # not flushed
    h.clock.advance(IDLE_TIMEOUT_S)  # storage says idle for 2 × timeout; memory says 1 ×
    assert (await h.call(alice, "GET", "/api/v1/me")).status_code == 200


async def test_an_idle_token_is_refused_just_past_the_timeout_after_a_flush(
    idle_h: Harness,
) -> None:
    h = idle_h
    alice = await h.user("alice")
    h.clock.advance(IDLE_TIMEOUT_S)
    assert (await h.call(alice, "GET", "/api/v1/me")).status_code == 200
    await accounts_of(h).flush_last_seen()
    h.clock.advance(IDLE_EXPIRED_S - 2)
    assert (await h.call(alice, "GET", "/api/v1/me")).status_code == 200
    h.clock.advance(IDLE_EXPIRED_S)
    assert (await h.call(alice, "GET", "/api/v1/me")).status_code == 401


# --------------------------------------------------------------------------- WebSocket


@pytest.fixture(params=["sqlite", "postgres"])
def ws_app(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TestClient, FakeClock, AccountService]]:
    """The app with session_idle_timeout set, under a TestClient (which speaks WebSocket)."""
    with database_url(request.param, tmp_path) as url:
        settings = Settings(database_url=url, session_idle_timeout=IDLE_TIMEOUT_S)
        clock = FakeClock()
        services = build_services(
            settings,
            clock=clock,
            password_hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
        )
        with TestClient(create_app(settings, services=services)) as client:
            yield client, clock, services.need(AccountService)


def _login(client: TestClient, username: str) -> tuple[str, str]:
    client.post("/api/v1/accounts", json={"username": username, "password": PASSWORD,
                                           "display_name": "小王 Wang"})  # fmt: skip
    body = client.post("/api/v1/sessions", json={"username": username, "password": PASSWORD}).json()
    return body["access_token"], body["device_id"]


def test_an_open_websocket_keeps_its_device_seen(
    ws_app: tuple[TestClient, FakeClock, AccountService],
) -> None:
    client, clock, accounts = ws_app
    token, device_id = _login(client, "wang_ws")
    auth = {"Authorization": f"Bearer {token}"}
    with client.websocket_connect(f"/api/v1/ws?access_token={token}") as ws:
        assert ws.receive_json()["type"] == "synced"
        for _ in range(4):  # the socket lives on, no frames: flushes note it in use
            clock.advance(IDLE_TIMEOUT_S / 2)
            assert client.portal is not None
            client.portal.call(accounts.flush_last_seen)
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
        seen_at = clock.now_ms()
    r = client.get("/api/v1/sessions", headers=auth)
    assert r.status_code == 200
    assert {d["device_id"]: d["last_seen_at"] for d in r.json()["devices"]} == {device_id: seen_at}


def test_an_idle_token_is_refused_on_websocket_connect(
    ws_app: tuple[TestClient, FakeClock, AccountService],
) -> None:
    client, clock, _accounts = ws_app
    token, _device_id = _login(client, "wang_idle")
    clock.advance(IDLE_EXPIRED_S)
    with pytest.raises(WebSocketDisconnect) as closed:
        with client.websocket_connect(f"/api/v1/ws?access_token={token}") as ws:
            ws.receive_json()
    assert closed.value.code == 4401
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
