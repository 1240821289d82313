"""The app in-process (ASGI), with a fake clock and a cheap password hash."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from argon2 import PasswordHasher

from qunliao.app import Services, build_services, create_app
from qunliao.core.clock import FakeClock
from qunliao.settings import Settings

PASSWORD = "correct horse"
_names = itertools.count()


@dataclass
class Account:
    user_id: str
    username: str
    token: str
    device_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Harness:
    client: httpx.AsyncClient
    services: Services
    clock: FakeClock
    accounts: list[Account] = field(default_factory=list)
    app: Any = None

    def client_from(self, host: str, **headers: str) -> httpx.AsyncClient:
        """Another client of the same app whose requests come from peer address `host`."""
        transport = httpx.ASGITransport(app=self.app, client=(host, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers)

    async def user(self, prefix: str = "user", display_name: str | None = None) -> Account:
        username = f"{prefix}{next(_names)}"
        r = await self.client.post(
            "/api/v1/accounts",
            json={
                "username": username,
                "password": PASSWORD,
                "display_name": display_name or f"{username} 用户",
            },
        )
        assert r.status_code == 201, r.text
        return await self.login(username)

    async def login(self, username: str, device: str = "test") -> Account:
        r = await self.client.post(
            "/api/v1/sessions",
            json={"username": username, "password": PASSWORD, "device_name": device},
        )
        assert r.status_code == 201, r.text
        body = r.json()
        return Account(body["user_id"], username, body["access_token"], body["device_id"])

    async def call(
        self, who: Account | None, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        headers = who.headers if who is not None else {}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def group(self, owner: Account, *members: Account, title: str = "测试群 test") -> str:
        r = await self.call(
            owner,
            "POST",
            "/api/v1/conversations",
            json={"kind": "group", "member_ids": [m.user_id for m in members], "title": title},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["conversation_id"])

    async def direct(self, a: Account, b: Account) -> str:
        r = await self.call(
            a, "POST", "/api/v1/conversations", json={"kind": "direct", "member_ids": [b.user_id]}
        )
        assert r.status_code in (200, 201), r.text
        return str(r.json()["conversation_id"])

    async def send(
        self, who: Account, conversation_id: str, text: str, txn: str | None = None, **extra: Any
    ) -> httpx.Response:
        self.clock.advance(0.001)  # distinct times keep "latest activity first" well defined
        return await self.call(
            who,
            "POST",
            f"/api/v1/conversations/{conversation_id}/messages",
            json={
                "client_txn_id": txn or f"t{next(_names)}",
                "msg_type": "text",
                "body": {"text": text},
                **extra,
            },
        )

    async def sync_all(self, who: Account, since: str | None = None) -> tuple[list[Any], str]:
        events: list[Any] = []
        while True:
            params = {"limit": 1000} | ({"since": since} if since else {})
            r = await self.call(who, "GET", "/api/v1/sync", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            since = page["next_token"]
            if not page["events"]:
                return events, since
            events.extend(page["events"])


@asynccontextmanager
async def running_app(database_url: str, **settings: Any) -> AsyncIterator[Harness]:
    # Tests make many users from one address within a frozen minute; the tests of the limit
    # itself pass the real number.
    settings.setdefault("registrations_per_address_per_min", 1_000_000)
    with tempfile.TemporaryDirectory(prefix="qunliao-exports-") as exports:
        settings.setdefault("export_dir", exports)  # never under the work tree
        async with _running_app(database_url, settings) as harness:
            yield harness


@asynccontextmanager
async def _running_app(database_url: str, settings: dict[str, Any]) -> AsyncIterator[Harness]:
    config = Settings(database_url=database_url, **settings)
    clock = FakeClock()
    services = build_services(
        config,
        clock=clock,
        password_hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    app = create_app(config, services=services)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Harness(client, services, clock, app=app)
