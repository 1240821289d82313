"""`qunliao serve --workers 2` on PostgreSQL: /metrics counts what every worker answered, on the
metrics_listen address or on the public port with the metrics token.

Requests go out on fresh connections until both workers have answered some (the kernel picks the
worker); each worker's own count is read from its snapshot (the directory `qunliao serve` hands
its workers), and the one answer must be their sum.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from qunliao.metrics_workers import DIR_VARIABLE, SNAPSHOT_INTERVAL_S, read_snapshots
from tests.e2e.helpers import ServerProcess, database, free_port

from .support import BusServer, cluster
from .test_workers import children

pytestmark = pytest.mark.e2e

TOKEN = "scrape-0123456789abcdef"
ROUTE = "/api/v1/me"  # answered 401 without a token: cheap, and no account needed


def snapshot_dir(server_pid: int) -> Path:
    """The directory `qunliao serve` gave its workers (in their environment)."""
    for pid in children(server_pid):
        with open(f"/proc/{pid}/environ", "rb") as environ:
            for entry in environ.read().split(b"\0"):
                if entry.startswith(DIR_VARIABLE.encode() + b"="):
                    return Path(entry.split(b"=", 1)[1].decode())
    raise AssertionError("no worker was given a metrics directory")


def per_worker(directory: Path) -> dict[int, float]:
    """Each worker's own count of 401s on ROUTE, from its last snapshot."""
    counts: dict[int, float] = {}
    for snapshot in read_snapshots(directory):
        for family in snapshot["families"]:
            if family["name"] != "qunliao_http_requests":
                continue
            for name, labels, value in family["samples"]:
                if name.endswith("_total") and labels == {
                    "method": "GET", "route": ROUTE, "status": "401"
                }:  # fmt: skip
                    counts[snapshot["pid"]] = float(value or 0)
    return counts


def total(text: str) -> float:
    pattern = r'^qunliao_http_requests_total\{method="GET",route="/api/v1/me",status="401"\} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def gauge(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} missing"
    return float(found.group(1))


async def spread_requests(server: ServerProcess) -> int:
    """GET ROUTE on fresh connections until both workers' snapshots show some; how many."""
    assert server.proc is not None
    directory = snapshot_dir(server.proc.pid)
    sent = 0
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.url, limits=no_reuse, timeout=5) as http:
        for _ in range(20):
            answers = await asyncio.gather(*(http.get(ROUTE) for _ in range(16)))
            assert {a.status_code for a in answers} == {401}
            sent += len(answers)
            await asyncio.sleep(SNAPSHOT_INTERVAL_S + 0.3)
            counts = per_worker(directory)
            if len(counts) == 2 and all(counts.values()):
                return sent
    raise AssertionError(f"every request went to one worker: {per_worker(directory)}")


async def scrape_until(url: str, sent: int, headers: dict[str, str] | None = None) -> str:
    """/metrics once every worker's latest requests are in its snapshot."""
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(40):
            answer = await http.get(url, headers=headers or {})
            assert answer.status_code == 200, answer.text
            if total(answer.text) >= sent:
                return answer.text
            await asyncio.sleep(0.25)
    raise AssertionError(f"/metrics never counted {sent} requests")


def check_sum(text: str, server: ServerProcess, sent: int) -> None:
    assert server.proc is not None
    counts = per_worker(snapshot_dir(server.proc.pid))
    assert len(counts) == 2 and all(counts.values()), counts
    assert total(text) == sent == sum(counts.values()), (total(text), sent, counts)
    assert gauge(text, "qunliao_workers") == 2
    assert gauge(text, "qunliao_bus_healthy") == 1
    # process metrics of both workers: more memory than either alone reports
    assert gauge(text, "process_resident_memory_bytes") > 50e6
    print(f"\n[metrics] {sent} requests over workers {counts}: /metrics says {total(text)}")


async def test_metrics_listen_covers_every_worker(tmp_path: Path) -> None:
    metrics_port = free_port()
    settings: dict[str, Any] = {
        "metrics_listen": f"127.0.0.1:{metrics_port}",
        "metrics_token": TOKEN,  # metrics_listen wins: the public port has no /metrics
        "log_format": "json",
    }
    bus = BusServer("nats", tmp_path)
    with (
        bus.running(),
        cluster(tmp_path, bus.url, nodes=1, extra_args=["--workers", "2"], settings=settings) as (
            server,
        ),  # fmt: skip
    ):
        sent = await spread_requests(server)
        text = await scrape_until(f"http://127.0.0.1:{metrics_port}/metrics", sent)
        check_sum(text, server, sent)
        async with httpx.AsyncClient(timeout=5) as http:
            public = await http.get(
                server.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert public.status_code == 404
            other = await http.get(f"http://127.0.0.1:{metrics_port}/healthz")
            assert other.status_code == 404
        assert server.proc is not None
        directory = snapshot_dir(server.proc.pid)
        log_path = server.log_path
    # JSON logs: the start-up lines, the workers' lines and the access log, one object a line
    assert not directory.exists(), "qunliao serve removes its metrics directory"
    lines = [
        line for line in log_path.read_text().splitlines() if line and not line.startswith("===")
    ]
    entries = [orjson.loads(line) for line in lines]
    messages = [e["message"] for e in entries]
    assert any(m.startswith("qunliao serving on http://127.0.0.1:") for m in messages), messages
    assert any(m.startswith("metrics on http://127.0.0.1:") for m in messages), messages
    access = [e for e in entries if e["logger"] == "qunliao.access" and e["route"] == ROUTE]
    assert len(access) == sent and {e["status"] for e in access} == {401}
    assert len({e["pid"] for e in access}) == 2  # each line says which worker wrote it
    assert TOKEN not in log_path.read_text()


async def test_the_token_scrape_covers_every_worker(tmp_path: Path) -> None:
    bus = BusServer("nats", tmp_path)
    with (
        bus.running(),
        cluster(
            tmp_path,
            bus.url,
            nodes=1,
            extra_args=["--workers", "2"],
            settings={"metrics_token": TOKEN},
        ) as (server,),  # fmt: skip
    ):
        sent = await spread_requests(server)
        scrape = {"Authorization": f"Bearer {TOKEN}"}
        text = await scrape_until(server.url + "/metrics", sent, scrape)
        check_sum(text, server, sent)
        async with httpx.AsyncClient(timeout=5) as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                assert (await http.get(server.url + "/metrics", headers=headers)).status_code == 401
        # whichever worker answers, the sum is the same
        async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as http:
            answers = await asyncio.gather(
                *(http.get(server.url + "/metrics", headers=scrape) for _ in range(8))
            )
        assert {total(a.text) for a in answers} == {sent}


def own_snapshots(pid: int) -> list[Path]:
    """The snapshot a one-process `qunliao serve` writes (named by its pid) in its directory."""
    return list(Path(tempfile.gettempdir()).glob(f"qunliao-metrics-*/{pid}.metrics.json"))


async def test_one_worker_with_metrics_listen_cleans_up_on_sigterm(tmp_path: Path) -> None:
    """Without --workers the listener runs in the serving process itself; SIGTERM (after which
    uvicorn re-raises the signal to die of it) still removes the snapshot directory."""
    metrics_port = free_port()
    with database("sqlite", tmp_path) as url:
        server = ServerProcess(
            url, tmp_path, env={"QUNLIAO_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"}
        )
        try:
            await asyncio.to_thread(server.start)
            assert server.proc is not None
            async with httpx.AsyncClient(timeout=5) as http:
                for _ in range(3):
                    assert (await http.get(server.url + ROUTE)).status_code == 401
                assert (await http.get(server.url + "/metrics")).status_code == 404
            text = await scrape_until(f"http://127.0.0.1:{metrics_port}/metrics", 3)
            assert total(text) == 3 and gauge(text, "qunliao_workers") == 1
            snapshots = own_snapshots(server.proc.pid)
            assert len(snapshots) == 1
        finally:
            await asyncio.to_thread(server.stop)
    assert not own_snapshots(server.proc.pid), "qunliao serve removes its metrics directory"
