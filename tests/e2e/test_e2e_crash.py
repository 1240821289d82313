"""THE CRASH TEST: kill -9 the server again and again while clients send; nothing acked is lost.

Four paced senders (two users × HTTP and WebSocket) and one device with eight unpaced HTTP
workers (a third user, rate limit lifted) send into one group while the test SIGKILLs the
server five times and restarts it on the same database and port. Every send is retried with its
original client_txn_id until it is acked (WebSocket senders retry half of their sends over HTTP:
one idempotency space per device). A fourth user listens with `Client.listen` throughout.
At the end every acked message must exist exactly once, in seq order, with the message_id that
its (possibly retried) send returned; the listener must have seen each exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import Counter
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qunliao.sdk import (
    Client,
    QunliaoConnectionError,
    QunliaoError,
    RetryPolicy,
    SendResult,
)

from .helpers import PASSWORD, ServerProcess

pytestmark = pytest.mark.e2e

KILLS = 5
PACE = 0.03  # seconds between one sender's sends: well under the default rate limit
BURST_WORKERS = 8  # dave's device keeps this many HTTP sends in flight (no rate limit)
RETRY = RetryPolicy(total=30.0, initial_delay=0.05, max_delay=0.5)


@dataclass
class Sent:
    sender: str
    index: int
    txn: str
    text: str
    result: SendResult
    attempts: int
    client: Client = field(repr=False)


@dataclass
class Run:
    group: str
    stop: asyncio.Event
    sent: list[Sent] = field(default_factory=list)
    heard: list[dict[str, Any]] = field(default_factory=list)


async def login(url: str, username: str, device: str) -> Client:
    client = Client(url, timeout=5.0, retry=RETRY)
    await client.login(username, PASSWORD, device_name=device)
    return client


async def http_sender(run: Run, name: str, client: Client, pace: float = PACE) -> None:
    index = 0
    while not run.stop.is_set():
        txn, text = f"{name}-{index}-{secrets.token_hex(4)}", f"{name} #{index}"
        result = await client.send_text(run.group, text, client_txn_id=txn)
        run.sent.append(Sent(name, index, txn, text, result, result.attempts, client))
        index += 1
        await asyncio.sleep(pace)


async def ws_sender(run: Run, name: str, client: Client) -> None:
    """Sends over a socket; after a break, retries the same txn id over a new socket (even
    sends) or over HTTP (odd sends), as a phone app with both paths would."""
    ws = None
    index = 0
    try:
        while not run.stop.is_set():
            txn, text = f"{name}-{index}-{secrets.token_hex(4)}", f"{name} #{index}"
            deadline = time.monotonic() + 30
            attempts = 0
            while True:
                attempts += 1
                try:
                    if attempts > 1 and index % 2 == 1:
                        result = await client.send_text(run.group, text, client_txn_id=txn)
                        attempts += result.attempts - 1
                        break
                    if ws is None or ws.closed:
                        ws = client.websocket()
                        await ws.connect()
                    result = await ws.send_text(run.group, text, client_txn_id=txn, ack_timeout=5)
                    break
                except QunliaoError as error:
                    if not isinstance(error, QunliaoConnectionError) and error.code not in (
                        "rate_limited",
                        "unavailable",
                    ):
                        raise
                    if ws is not None:
                        await ws.close()
                        ws = None
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05 * min(attempts, 10))
            run.sent.append(Sent(name, index, txn, text, result, attempts, client))
            index += 1
            await asyncio.sleep(PACE)
    finally:
        if ws is not None:
            await ws.close()


async def listener(run: Run, client: Client, since: str) -> None:
    fast = RetryPolicy(initial_delay=0.05, max_delay=0.5)
    async with aclosing(client.listen(since=since, dedupe=False, reconnect=fast)) as events:
        async for event in events:
            if event.get("conversation_id") == run.group and event.get("type") == "message":
                run.heard.append(event)


async def killer(server: ServerProcess, rng: random.Random) -> list[float]:
    restarts = []
    for _ in range(KILLS):
        await asyncio.sleep(rng.uniform(0.5, 1.0))
        server.kill()
        await asyncio.sleep(rng.uniform(0.0, 0.2))
        restarts.append(await server.astart())
    return restarts


async def test_kill_9_during_concurrent_sends_loses_nothing(
    fresh_backend: tuple[str, Path],
) -> None:
    database_url, workdir = fresh_backend
    # dave's burst keeps many sends in flight at each kill: some are committed, never answered
    unlimited = {"QUNLIAO_RATE_LIMIT_PER_S": "100000", "QUNLIAO_RATE_LIMIT_BURST": "100000"}
    server = ServerProcess(database_url, workdir, env=unlimited)
    await server.astart()
    clients: list[Client] = []
    try:
        names = {who: f"{who}_{secrets.token_hex(3)}" for who in ("alice", "bob", "carol", "dave")}
        user_ids = {}
        async with Client(server.url) as registrar:
            for who, username in names.items():
                user_ids[who] = await registrar.register(username, PASSWORD, who)
        alice_http = await login(server.url, names["alice"], "alice-http")
        alice_ws = await login(server.url, names["alice"], "alice-ws")
        bob_http = await login(server.url, names["bob"], "bob-http")
        bob_ws = await login(server.url, names["bob"], "bob-ws")
        carol = await login(server.url, names["carol"], "carol-listener")
        dave = await login(server.url, names["dave"], "dave-burst")
        clients += [alice_http, alice_ws, bob_http, bob_ws, carol, dave]

        others = [user_ids["bob"], user_ids["carol"], user_ids["dave"]]
        group = await alice_http.create_group(others, "crash")
        token = None
        while True:  # carol's token as of now, so her listen() is gap-free from here
            page = await carol.sync(token, limit=1000)
            token = page.next_token
            if not page.events:
                break

        run = Run(group=group, stop=asyncio.Event())
        listening = asyncio.create_task(listener(run, carol, token))
        senders = [
            asyncio.create_task(http_sender(run, "alice-http", alice_http)),
            asyncio.create_task(ws_sender(run, "alice-ws", alice_ws)),
            asyncio.create_task(http_sender(run, "bob-http", bob_http)),
            asyncio.create_task(ws_sender(run, "bob-ws", bob_ws)),
            *(
                asyncio.create_task(http_sender(run, f"dave-burst{i}", dave, pace=0.0))
                for i in range(BURST_WORKERS)
            ),
        ]
        rng = random.Random()
        restarts = await killer(server, rng)
        await asyncio.sleep(0.5)
        run.stop.set()
        await asyncio.wait_for(asyncio.gather(*senders), 60)

        await check_history(run, alice_http, user_ids)
        await check_retries_return_the_original(run, rng)
        await check_sync_from_the_start(run, bob_http)
        await check_listener(run, listening)

        retried = sum(1 for s in run.sent if s.attempts > 1)
        replayed = sum(1 for s in run.sent if s.attempts > 1 and s.result.duplicate)
        print(
            f"\ncrash test: {len(run.sent)} acked sends, {retried} needed retries "
            f"({replayed} answered as repeats: committed before the kill), "
            f"{server.starts} server starts, restart-to-healthy {[round(r, 2) for r in restarts]} s"
        )
        assert retried > 0, "no send was ever interrupted: the test proved nothing"
    except BaseException:
        print(server.log_tail(80))
        raise
    finally:
        for client in clients:
            await client.aclose()
        server.stop()


async def check_history(run: Run, client: Client, user_ids: dict[str, str]) -> None:
    history = [m for m in await client.all_history(run.group) if m["msg_type"] == "text"]
    seqs = [m["seq"] for m in history]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "history out of seq order"
    texts = Counter(m["body"]["text"] for m in history)
    repeated = {text: n for text, n in texts.items() if n > 1}
    assert not repeated, f"sends stored more than once: {repeated}"
    by_id = {m["message_id"]: m for m in history}
    for sent in run.sent:
        stored = by_id.get(sent.result.message_id)
        assert stored is not None, f"acked {sent.txn} ({sent.result}) is not in history"
        assert stored["body"]["text"] == sent.text, f"{sent.txn} acked with another message"
        assert stored["seq"] == sent.result.seq
        assert stored["sent_at"] == sent.result.sent_at
        assert stored["sender_id"] == user_ids[sent.sender.split("-")[0]]
    assert len(history) == len(run.sent), "history holds messages that no send was acked for"
    for name in {s.sender for s in run.sent}:
        mine = sorted((s for s in run.sent if s.sender == name), key=lambda s: s.index)
        assert [s.result.seq for s in mine] == sorted(s.result.seq for s in mine)


async def check_retries_return_the_original(run: Run, rng: random.Random) -> None:
    """Send again every send that was retried (and a sample of the rest): the server must answer
    with the original message, and over HTTP say it is a repeat."""
    retried = [s for s in run.sent if s.attempts > 1]
    others = [s for s in run.sent if s.attempts == 1]
    chosen = retried + rng.sample(others, min(len(others), 40))
    semaphore = asyncio.Semaphore(8)

    async def again(sent: Sent) -> None:
        async with semaphore:
            result = await sent.client.send_text(run.group, sent.text, client_txn_id=sent.txn)
        assert result == sent.result, f"{sent.txn}: {result} != {sent.result}"
        assert result.duplicate, f"{sent.txn}: a repeat was answered 201 (a new message?)"

    await asyncio.gather(*(again(s) for s in chosen))


async def check_sync_from_the_start(run: Run, client: Client) -> None:
    token = None
    seen: list[tuple[str, int]] = []
    message_ids: list[str] = []
    while True:
        page = await client.sync(token, limit=1000)
        if not page.events:
            break
        token = page.next_token
        for event in page.events:
            if event.get("conversation_id") == run.group and "seq" in event:
                seen.append((event["conversation_id"], event["seq"]))
                if event["type"] == "message":
                    message_ids.append(event["message_id"])
    assert len(seen) == len(set(seen)), "sync repeated events"
    assert [seq for _, seq in seen] == sorted(seq for _, seq in seen), "sync out of order"
    assert Counter(message_ids) == Counter(s.result.message_id for s in run.sent)


async def check_listener(run: Run, listening: asyncio.Task[None]) -> None:
    expected = {s.result.message_id for s in run.sent}
    for _ in range(200):  # up to 20 s for the last reconnect and replay
        if {e["message_id"] for e in run.heard} >= expected:
            break
        await asyncio.sleep(0.1)
    listening.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listening
    heard = Counter(e["message_id"] for e in run.heard)
    missing = expected - set(heard)
    assert not missing, f"listen() never delivered {len(missing)} acked messages"
    assert not {m: n for m, n in heard.items() if n > 1}, "listen() delivered repeats"
    seqs = [e["seq"] for e in run.heard]
    assert seqs == sorted(seqs), "listen() delivered out of seq order"
