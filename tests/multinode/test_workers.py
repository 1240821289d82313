"""`qunliao serve --workers 2`: two processes on one port, messages cross between them.

Sockets are opened until both worker processes hold some (which worker accepts a connection
is the kernel's choice; the test finds out from /proc which process owns the server end of
each connection). Every socket's user sends into one group over its socket; every socket must
get every message exactly once, in seq order — so messages written in one worker reach sockets
held by the other.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from .support import (
    BusServer,
    accounts,
    check_seq_order,
    cluster,
    health,
    wait_until,
)

pytestmark = pytest.mark.e2e

USERS = 3
MIN_SOCKETS = 8
MAX_SOCKETS = 48
PER_SOCKET = 10


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def server_end_inode(server_port: int, client_port: int) -> int | None:
    """The inode of the accepted socket 127.0.0.1:server_port ↔ 127.0.0.1:client_port."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[9])
    return None


def owner(server_pid: int, server_port: int, conn: ClientConnection) -> int | None:
    """The worker process holding the server end of `conn`."""
    inode = server_end_inode(server_port, conn.local_address[1])
    for pid in children(server_pid):
        if inode is not None and inode in socket_inodes(pid):
            return pid
    return None


async def read_frames(conn: ClientConnection, frames: list[dict[str, Any]]) -> None:
    async for raw in conn:
        frames.append(orjson.loads(raw))


async def test_two_workers_on_one_port_deliver_to_each_other(tmp_path: Path) -> None:
    bus = BusServer("nats", tmp_path)
    with (
        bus.running(),
        cluster(tmp_path, bus.url, nodes=1, extra_args=["--workers", "2"]) as (server,),
    ):
        assert server.proc is not None
        server_pid = server.proc.pid
        clients = list((await accounts([server.url], [f"w{i}" for i in range(USERS)])).values())
        conns: list[tuple[ClientConnection, int]] = []
        try:
            group = await clients[0].create_group([c.user_id for c in clients[1:]], "workers")
            # sockets round robin over the users (several per device) until both worker
            # processes hold at least one
            while len(conns) < MAX_SOCKETS:
                client = clients[len(conns) % USERS]
                auth = {"authorization": f"Bearer {client.access_token}"}
                conn = await connect(
                    client.websocket_url(), additional_headers=auth, open_timeout=5
                )
                pid = None
                for _ in range(50):  # the accept may take a moment to show in /proc
                    pid = owner(server_pid, server.port, conn)
                    if pid is not None:
                        break
                    await asyncio.sleep(0.02)
                assert pid is not None, "no worker owns the connection"
                conns.append((conn, pid))
                if len(conns) >= MIN_SOCKETS and len({p for _, p in conns}) >= 2:
                    break
            per_worker = Counter(pid for _, pid in conns)
            assert len(per_worker) == 2, f"every socket landed on one worker: {per_worker}"

            frames: list[list[dict[str, Any]]] = [[] for _ in conns]
            readers = [
                asyncio.create_task(read_frames(conn, got))
                for (conn, _), got in zip(conns, frames, strict=True)
            ]
            for conn, _ in conns:  # live before anything is sent
                await conn.send(orjson.dumps({"type": "ping"}).decode())

            await wait_until(
                lambda: all(any(f["type"] == "pong" for f in got) for got in frames),
                within=10,
                what="every socket to answer a ping",
            )
            txns: list[str] = []
            for i in range(PER_SOCKET):
                for conn, _ in conns:
                    txn = f"t{i}-{secrets.token_hex(4)}"
                    txns.append(txn)
                    frame = {
                        "type": "send",
                        "conversation_id": group,
                        "client_txn_id": txn,
                        "msg_type": "text",
                        "body": {"text": txn},
                    }
                    await conn.send(orjson.dumps(frame).decode())

            def messages(got: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return [f for f in got if f["type"] == "message" and f["conversation_id"] == group]

            await wait_until(
                lambda: all(len(messages(got)) >= len(txns) for got in frames),
                within=20,
                what="every socket to hear every message",
            )
            await asyncio.sleep(0.3)  # a repeat would arrive now
            acks = [f for got in frames for f in got if f["type"] == "ack"]
            errors = [f for got in frames for f in got if f["type"] == "error"]
            assert not errors, errors[:3]
            assert sorted(a["client_txn_id"] for a in acks) == sorted(txns)
            pid_of = [pid for _, pid in conns]
            for got, pid in zip(frames, pid_of, strict=True):
                heard = messages(got)
                texts = [m["body"]["text"] for m in heard]
                assert sorted(texts) == sorted(txns), f"a socket on worker {pid} missed or repeated"
                check_seq_order(f"socket on worker {pid}", heard)
            status = await health(server.url)
            assert status["bus"]["healthy"] is True
            print(
                f"\n[workers] {len(conns)} sockets on workers {dict(per_worker)}; "
                f"{len(txns)} messages, each delivered once to every socket"
            )
            for conn, _ in conns:
                await conn.close()
            await asyncio.gather(*readers, return_exceptions=True)
        finally:
            for conn, _ in conns:
                await conn.close()
            for client in clients:
                await client.aclose()
