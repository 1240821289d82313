"""Two `qunliao serve` processes on one PostgreSQL, woken through Redis or NATS.

Users on different nodes chat; both nodes write concurrently into the same conversation. Every
socket on either node must carry every message exactly once, in seq order, and sync through
either node must agree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qunliao.sdk import Client, WebSocketConnection

from .helpers import PASSWORD, ServerProcess, database, require_env

pytestmark = pytest.mark.e2e

BUSES = {
    "redis": ("QUNLIAO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "nats": ("QUNLIAO_TEST_NATS_URL", "nats://127.0.0.1:4222"),
}
PER_SENDER = 60


@pytest.fixture(params=sorted(BUSES))
def two_nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    bus_url = require_env(*BUSES[request.param])
    with database("postgres", tmp_path) as database_url:
        nodes = [
            ServerProcess(database_url, tmp_path, extra_args=["--bus-url", bus_url])
            for _ in range(2)
        ]
        try:
            for node in nodes:
                node.start()
            yield nodes
        except BaseException:
            for node in nodes:
                print(node.log_tail(40))
            raise
        finally:
            for node in nodes:
                node.stop()


async def collect(ws: WebSocketConnection, group: str, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < count:
        event = await ws.next_event()
        if event.get("conversation_id") == group and event.get("type") == "message":
            got.append(event)
    return got


async def sync_messages(client: Client, group: str) -> list[str]:
    ids: list[str] = []
    token = None
    while True:
        page = await client.sync(token, limit=1000)
        if not page.events:
            return ids
        token = page.next_token
        ids += [
            e["message_id"]
            for e in page.events
            if e.get("conversation_id") == group and e.get("type") == "message"
        ]


async def test_two_nodes_deliver_everything_exactly_once(two_nodes: list[ServerProcess]) -> None:
    node_a, node_b = two_nodes
    async with Client(node_a.url) as registrar:
        alice_id = await registrar.register("alice_mn", PASSWORD, "Alice")
        bob_id = await registrar.register("bob_mn", PASSWORD, "Bob")
    async with (
        Client(node_a.url) as alice_a,
        Client(node_b.url) as alice_b,
        Client(node_b.url) as bob_b,
    ):
        await alice_a.login("alice_mn", PASSWORD, "alice on A")
        await alice_b.login("alice_mn", PASSWORD, "alice on B")
        await bob_b.login("bob_mn", PASSWORD, "bob on B")
        group = await alice_a.create_group([bob_id], "across nodes")
        assert alice_a.user_id == alice_id

        async with (
            alice_a.websocket() as ws_alice_a,
            alice_b.websocket() as ws_alice_b,
            bob_b.websocket() as ws_bob_b,
        ):
            sockets = [ws_alice_a, ws_alice_b, ws_bob_b]
            for ws in sockets:
                await ws.ping()
            expected = 2 * PER_SENDER
            listening = [asyncio.create_task(collect(ws, group, expected)) for ws in sockets]

            async def over_socket() -> list[str]:  # alice writes through node A
                results = []
                for i in range(PER_SENDER):
                    results.append(await ws_alice_a.send_text(group, f"A {i}"))
                return [r.message_id for r in results]

            async def over_http() -> list[str]:  # bob writes through node B at the same time
                results = []
                for i in range(PER_SENDER):
                    results.append(await bob_b.send_text(group, f"B {i}"))
                return [r.message_id for r in results]

            done = asyncio.Event()

            async def follow_sync() -> list[str]:
                """Small pages while both nodes commit: a token must never skip a late commit."""
                ids: list[str] = []
                token = None
                while True:
                    finished = done.is_set()
                    page = await alice_b.sync(token, limit=7)
                    token = page.next_token
                    ids += [
                        e["message_id"]
                        for e in page.events
                        if e.get("conversation_id") == group and e.get("type") == "message"
                    ]
                    if finished and not page.events:
                        return ids

            syncing = asyncio.create_task(follow_sync())
            sent_a, sent_b = await asyncio.gather(over_socket(), over_http())
            done.set()
            received = await asyncio.wait_for(asyncio.gather(*listening), 15)
            followed = await asyncio.wait_for(syncing, 15)
        assert len(followed) == len(set(followed)), "sync repeated messages"
        assert sorted(followed) == sorted(sent_a + sent_b), "sync skipped messages"

        for events in received:
            ids = [e["message_id"] for e in events]
            assert sorted(ids) == sorted(sent_a + sent_b), "a socket missed or repeated messages"
            seqs = [e["seq"] for e in events]
            assert seqs == sorted(seqs), "a socket delivered out of seq order"
        for client in (alice_a, alice_b, bob_b):
            assert sorted(await sync_messages(client, group)) == sorted(sent_a + sent_b)
        history = await bob_b.all_history(group)
        assert [m["message_id"] for m in history] == [e["message_id"] for e in received[0]]

        # a token from node A resumes on node B (a load balancer may send you anywhere)
        token_from_a = ws_alice_a.last_token
        assert token_from_a is not None
        missed = [await bob_b.send_text(group, f"missed {i}") for i in range(5)]
        alice_on_b = Client(node_b.url, access_token=alice_a.access_token)
        async with alice_on_b, alice_on_b.websocket(since=token_from_a) as ws:
            replayed = []
            while (event := await asyncio.wait_for(ws.next_event(), 10))["type"] != "synced":
                if event.get("type") == "message":
                    replayed.append(event["message_id"])
        assert replayed == [m.message_id for m in missed]
