"""`kill -9` one of two gateways mid-load: its clients move to the other one and lose nothing.

The clients of node 1 reach it through a small failover proxy (standing in for HAProxy/nginx):
a new connection goes to node 1 while it accepts, else to node 2. Node 2's clients talk to it
directly. Senders on both sides (HTTP and WebSocket) write into two groups; listeners use the
SDK's `listen()` (auto-resume from the last token, dedupe off so a server repeat would show).
Mid-load node 1 gets SIGKILL: its listeners and senders reconnect through the proxy to node 2,
senders repeat unacked sends with the same client_txn_id. Afterwards every acked message is in
the database once, with the message_id its send returned, and every listener has each exactly
once, in seq order per conversation. Node 1 then comes back and serves the same history.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .support import (
    BusServer,
    FailoverProxy,
    Heard,
    Load,
    accounts,
    check_exactly_once,
    cluster,
    http_sender,
    listen_into,
    same_device,
    token_now,
    wait_until,
    ws_sender,
)

pytestmark = pytest.mark.e2e

PACE = 0.03
BURST = 8


async def test_kill_9_one_gateway_clients_fail_over_and_resume(tmp_path: Path) -> None:
    bus = BusServer("redis", tmp_path)
    with bus.running(), cluster(tmp_path, bus.url) as (node1, node2):
        async with FailoverProxy([node1.port, node2.port]) as proxy:
            # ann's and lin's devices reach node 1 through the proxy; ben's and bea's talk to
            # node 2 directly. Lin listens twice on one device, bea once.
            made = await accounts([node1.url, node2.url], ["ann", "lin", "ben", "bea"])
            clients = {
                "ann": same_device(made["ann"], proxy.url),
                "lin": same_device(made["lin"], proxy.url),
                "ben": same_device(made["ben"], node2.url),
                "bea": same_device(made["bea"], node2.url),
            }
            try:
                others = [clients[n].user_id for n in ("lin", "ben", "bea")]
                groups = [
                    await clients["ann"].create_group(others, "failover one"),
                    await clients["ann"].create_group(others, "failover two"),
                ]
                listeners = {
                    "lin 1": (clients["lin"], Heard("lin 1 (node 1 via proxy)")),
                    "lin 2": (clients["lin"], Heard("lin 2 (node 1 via proxy)")),
                    "bea": (clients["bea"], Heard("bea (node 2)")),
                }
                listening = []
                for client, heard in listeners.values():
                    since = await token_now(client)
                    listening.append(asyncio.create_task(listen_into(client, heard, since)))
                load = Load()
                senders = []
                for name in ("ann", "ben"):
                    client = clients[name]
                    senders.append(http_sender(load, f"{name}-http", client, groups, PACE))
                    senders.append(ws_sender(load, f"{name}-ws", client, groups, PACE))
                for i in range(BURST):  # sends in flight on ann's device: some commit unanswered
                    senders.append(http_sender(load, f"ann-burst{i}", clients["ann"], groups, 0))
                sending = [asyncio.create_task(sender) for sender in senders]
                await wait_until(
                    lambda: len(load.acked) > 200 and all(h.events for _, h in listeners.values()),
                    within=15,
                    what="traffic on every listener",
                )
                routed_before = proxy.routed[node2.port]
                node1.kill()
                killed_at = time.monotonic()
                acked_at_kill = len(load.acked)
                # Through the proxy, node 1's listeners and senders now land on node 2.
                await wait_until(
                    lambda: proxy.routed[node2.port] >= routed_before + 3,
                    within=15,
                    what="node 1's clients to reconnect to node 2",
                )
                moved_after = time.monotonic() - killed_at
                await wait_until(
                    lambda: len(load.acked) > acked_at_kill + 200,
                    within=20,
                    what="sends to go on after the kill",
                )
                load.stop.set()
                await asyncio.wait_for(asyncio.gather(*sending), 40)

                everything = set(load.ids())
                for _, heard in listeners.values():
                    await wait_until(
                        lambda heard=heard: everything <= {e["message_id"] for e in heard.events},
                        within=15,
                        what=f"{heard.name} to hear every acked message",
                    )
                await asyncio.sleep(0.3)  # a repeat would arrive now
                for task in listening:
                    task.cancel()
                await asyncio.gather(*listening, return_exceptions=True)

                stored: list[dict[str, Any]] = []
                for group in groups:
                    stored += await clients["bea"].all_history(group)
                texts = Counter(m["body"]["text"] for m in stored)  # each text is its txn id
                assert not [t for t, n in texts.items() if n > 1], "one client_txn_id stored twice"
                by_text = {m["body"]["text"]: m["message_id"] for m in stored}
                for acked in load.acked:
                    assert by_text.get(acked.txn) == acked.message_id, f"{acked.txn} lost/changed"
                assert len(stored) == len(load.acked), "stored messages nobody got an ack for"
                for _, heard in listeners.values():
                    check_exactly_once(heard, load, groups)

                retried = sum(1 for a in load.acked if a.attempts > 1)
                repeats = sum(1 for a in load.acked if a.duplicate)
                print(
                    f"\n[gateway kill] acked {len(load.acked)} ({acked_at_kill} before the kill, "
                    f"{retried} needed a retry, {repeats} of them committed before the kill); "
                    f"node 1's clients on node 2 {moved_after:.2f} s after the kill; "
                    f"proxy routing {dict(proxy.routed)}"
                )

                await node1.astart()  # back on the same port, same history
                async with same_device(clients["lin"], node1.url) as again:
                    for group in groups:
                        history = [m["message_id"] for m in await again.all_history(group)]
                        assert sorted(history) == sorted(load.ids(group))
            finally:
                for client in [*made.values(), *clients.values()]:
                    await client.aclose()
