"""The sync property with writers in two processes: no skip, no duplicate, seq order kept.

A plain global autoincrement read naively skips rows: id 11 can commit before id 10, a reader
that saw 11 moves past 10 for good. Here ten writers (HTTP with several sends in flight per
device, and WebSocket) on two gateways commit into one conversation as fast as they can while
readers follow `/api/v1/sync` tokens, each page from a randomly chosen node with a random small
`limit`, one reader with `timeout_ms=0` and one long-polling. Each reader must end up with every
acked message exactly once, in strictly increasing seq; so must a WebSocket on each node.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from qunliao.sdk import Client

from .support import (
    BUS_KINDS,
    BusServer,
    Heard,
    Load,
    accounts,
    check_exactly_once,
    cluster,
    http_sender,
    receive,
    same_device,
    token_now,
    wait_until,
    ws_sender,
)

pytestmark = pytest.mark.e2e

LOAD_S = 3.0
IN_FLIGHT = 4  # concurrent HTTP sends per HTTP device


async def follow_sync(
    clients: list[Client],
    group: str,
    since: str,
    written: asyncio.Event,
    rng: random.Random,
    timeout_ms: int,
) -> list[dict[str, Any]]:
    """Follow next_token, every page from a random node, until every write is acked and a
    page started after that comes back empty."""
    events: list[dict[str, Any]] = []
    token = since
    while True:
        finished = written.is_set()
        client = rng.choice(clients)
        page = await client.sync(token, limit=rng.randint(1, 12), timeout_ms=timeout_ms)
        token = page.next_token
        events += [
            e for e in page.events if e.get("conversation_id") == group and e["type"] == "message"
        ]
        if finished and not page.events:
            return events


@pytest.mark.parametrize("kind", BUS_KINDS)
async def test_sync_is_exactly_once_with_writers_in_two_processes(
    kind: str, tmp_path: Path
) -> None:
    bus = BusServer(kind, tmp_path)
    with bus.running(), cluster(tmp_path, bus.url) as (node1, node2):
        # w1 writes through node 1, w2 through node 2; the reader's one device follows sync
        # through both nodes and keeps a socket on each
        clients = await accounts([node1.url, node2.url], ["w1", "w2", "reader"])
        w1, w2, reader = clients["w1"], clients["w2"], clients["reader"]
        readers_on = [same_device(reader, node1.url), same_device(reader, node2.url)]
        try:
            group = await w1.create_group([w2.user_id, reader.user_id], "two writers")
            seed = random.randrange(1 << 30)
            load = Load()

            sockets = {"node 1": readers_on[0].websocket(), "node 2": readers_on[1].websocket()}
            heard = {n: Heard(n) for n in sockets}
            for ws in sockets.values():
                await ws.connect()
                await ws.ping()
            receiving = [asyncio.create_task(receive(sockets[n], heard[n])) for n in sockets]

            since = await token_now(reader)
            written = asyncio.Event()
            readers = [
                asyncio.create_task(
                    follow_sync(readers_on, group, since, written, random.Random(seed + i), wait)
                )
                for i, wait in enumerate((0, 500))  # one reads, one long-polls
            ]
            writers = []
            for name, client in (("w1", w1), ("w2", w2)):
                writers += [
                    asyncio.create_task(http_sender(load, f"{name}.{i}", client, [group], 0.0))
                    for i in range(IN_FLIGHT)
                ]
                writers.append(
                    asyncio.create_task(ws_sender(load, f"{name}.ws", client, [group], 0))
                )

            await asyncio.sleep(LOAD_S)
            load.stop.set()
            await asyncio.wait_for(asyncio.gather(*writers), 30)
            written.set()
            followed = await asyncio.wait_for(asyncio.gather(*readers), 30)

            stored = [m["message_id"] for m in await reader.all_history(group)]
            assert sorted(stored) == sorted(load.ids()), "the database and the acks disagree"
            for name, events in zip(("reader", "long-poller"), followed, strict=True):
                ids = [e["message_id"] for e in events]
                assert len(ids) == len(set(ids)), f"{name}: sync repeated a message (seed {seed})"
                assert set(ids) == set(stored), f"{name}: sync skipped a message (seed {seed})"
                seqs = [e["seq"] for e in events]
                assert seqs == sorted(seqs), f"{name}: out of seq order (seed {seed})"
                assert ids == stored, f"{name}: not in the order of history"

            for name in sockets:
                await wait_until(
                    lambda name=name: len(heard[name].events) >= len(stored),
                    within=10,
                    what=f"{name} to hear everything",
                )
            await asyncio.sleep(0.3)  # a repeat would arrive now
            for ws in sockets.values():
                await ws.close()
            await asyncio.gather(*receiving)
            for name in sockets:
                check_exactly_once(heard[name], load, [group])
                assert [e["message_id"] for e in heard[name].events] == stored
            by_node = {
                "node 1": sum(1 for a in load.acked if a.sender.startswith("w1")),
                "node 2": sum(1 for a in load.acked if a.sender.startswith("w2")),
            }
            print(
                f"\n[{kind} sync] {len(stored)} messages from {len(writers)} writers {by_node}"
                f" followed exactly once by both readers and both sockets (seed {seed})"
            )
        finally:
            for client in [*clients.values(), *readers_on]:
                await client.aclose()
