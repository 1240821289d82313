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

from qunliao.sdk import Client

from .support import (
    BusServer,
    FailoverProxy,
    Heard,
    Load,
    check_exactly_once,
    cluster,
    http_sender,
    listen_into,
    login,
    register_users,
    token_now,
    wait_until,
    ws_sender,
)

pytestmark = pytest.mark.e2e

PACE = 0.03
BURST = 4


async def test_kill_9_one_gateway_clients_fail_over_and_resume(tmp_path: Path) -> None:
    bus = BusServer("redis", tmp_path)
    with bus.running(), cluster(tmp_path, bus.url) as (node1, node2):
        async with FailoverProxy([node1.port, node2.port]) as proxy:
            names = ["a_http", "a_burst", "a_ws", "b_http", "b_ws"]
            names += ["a_listen", "a_listen2", "b_listen"]
            usernames = await register_users(node2.url, names)
            via = {n: proxy.url if n.startswith("a_") else node2.url for n in names}
            clients = {n: await login(via[n], usernames[n], f"{n}-dev") for n in names}
            try:
                others = [clients[n].user_id for n in names if n != "a_http"]
                groups = [
                    await clients["a_http"].create_group(others, "failover one"),
                    await clients["a_http"].create_group(others, "failover two"),
                ]
                listeners = {n: Heard(n) for n in ("a_listen", "a_listen2", "b_listen")}
                listening = []
                for name, heard in listeners.items():
                    since = await token_now(clients[name])
                    listening.append(asyncio.create_task(listen_into(clients[name], heard, since)))
                load = Load()
                senders = (
                    [
                        asyncio.create_task(http_sender(load, n, clients[n], groups, PACE))
                        for n in ("a_http", "b_http")
                    ]
                    + [
                        asyncio.create_task(ws_sender(load, n, clients[n], groups, PACE))
                        for n in ("a_ws", "b_ws")
                    ]
                    + [  # one device with several sends in flight: some commit, unanswered
                        asyncio.create_task(
                            http_sender(load, f"a_burst{i}", clients["a_burst"], groups, 0.0)
                        )
                        for i in range(BURST)
                    ]
                )
                await wait_until(
                    lambda: len(load.acked) > 200 and all(h.events for h in listeners.values()),
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
                await asyncio.wait_for(asyncio.gather(*senders), 40)

                everything = set(load.ids())
                for heard in listeners.values():
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
                    stored += await clients["b_listen"].all_history(group)
                texts = Counter(m["body"]["text"] for m in stored)  # each text is its txn id
                assert not [t for t, n in texts.items() if n > 1], "one client_txn_id stored twice"
                by_text = {m["body"]["text"]: m["message_id"] for m in stored}
                for acked in load.acked:
                    assert by_text.get(acked.txn) == acked.message_id, f"{acked.txn} lost/changed"
                assert len(stored) == len(load.acked), "stored messages nobody got an ack for"
                for heard in listeners.values():
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
                token = clients["a_listen"].access_token
                async with Client(node1.url, access_token=token) as again:
                    for group in groups:
                        history = [m["message_id"] for m in await again.all_history(group)]
                        assert sorted(history) == sorted(load.ids(group))
            finally:
                for client in clients.values():
                    await client.aclose()
