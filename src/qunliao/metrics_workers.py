"""One `/metrics` for every worker of `qunliao serve --workers N`.

Each worker keeps its numbers in memory (metrics.py) and writes a snapshot of them into a
directory that `qunliao serve` creates and removes, every SNAPSHOT_INTERVAL_S and when it
stops. Whoever answers a scrape (a worker on the public port, or the metrics_listen server in
`qunliao serve`'s own process) merges the snapshots: counters and histograms are summed over
every worker that ever wrote one (a worker that died keeps its counts, so totals never go back);
gauges only over workers still running, each gauge by its own rule (connections add up, the hub
position is the highest, bus health the lowest). A worker answering a scrape uses its own live
numbers, so a one-worker server is never stale; the others' are at most one interval old.

Why not prometheus_client's multiprocess mode: it writes an mmap file on every increment (a
lock and a write per request on the hot path), drops the process and GC collectors, cannot read
the per-message integers that our readings take at scrape time, and picks its mode from an
environment variable at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, TypedDict

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger("qunliao.metrics")

# Set by `qunliao serve` for its workers; not a setting.
DIR_VARIABLE = "QUNLIAO_WORKER_METRICS_DIR"
SNAPSHOT_INTERVAL_S = 2.0
SUFFIX = ".metrics.json"

Merge = Literal["sum", "max", "min"]
# The process collector's gauges that do not add up across processes.
PROCESS_GAUGE_MERGE: Mapping[str, Merge] = {
    "process_start_time_seconds": "min",
    "process_max_fds": "min",
    "python_info": "max",
}


class Family(TypedDict):
    name: str
    type: str
    help: str
    unit: str
    merge: Merge
    samples: list[tuple[str, dict[str, str], float | None]]


class Snapshot(TypedDict):
    pid: int
    families: list[Family]


def take_snapshot(registry: CollectorRegistry, gauge_merge: Mapping[str, Merge]) -> Snapshot:
    families: list[Family] = []
    for metric in registry.collect():
        merge = gauge_merge.get(metric.name, "sum") if metric.type == "gauge" else "sum"
        samples: list[tuple[str, dict[str, str], float | None]] = [
            (s.name, dict(s.labels), s.value) for s in metric.samples
        ]
        family = Family(
            name=metric.name, type=metric.type, help=metric.documentation,
            unit=metric.unit, merge=merge, samples=samples,
        )  # fmt: skip
        families.append(family)
    return Snapshot(pid=os.getpid(), families=families)


class SharedMetrics:
    """One worker's side: publish its snapshot, and answer a scrape with everyone's."""

    def __init__(
        self, directory: Path, registry: CollectorRegistry, gauge_merge: Mapping[str, Merge]
    ) -> None:
        self.directory = directory
        self._registry = registry
        self._gauge_merge = gauge_merge
        self._pid = os.getpid()
        self._failed = False

    def publish(self) -> None:
        """Write this worker's snapshot (atomically: a reader never sees half of one)."""
        snapshot = take_snapshot(self._registry, self._gauge_merge)
        path = self.directory / f"{self._pid}{SUFFIX}"
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            temporary.write_bytes(orjson.dumps(snapshot))
            os.replace(temporary, path)
            self._failed = False
        except OSError as exc:
            if not self._failed:  # once per failure streak, not every interval
                log.warning("cannot write the metrics snapshot %s: %s", path, exc)
            self._failed = True

    def render(self) -> bytes:
        own = take_snapshot(self._registry, self._gauge_merge)
        others = [s for s in read_snapshots(self.directory) if s["pid"] != self._pid]
        return generate_latest(_Merged([own, *others]))

    async def run(self) -> None:
        """Publish every SNAPSHOT_INTERVAL_S until cancelled, then once more."""
        try:
            while True:
                await asyncio.to_thread(self.publish)
                await asyncio.sleep(SNAPSHOT_INTERVAL_S)
        finally:
            self.publish()


def read_snapshots(directory: Path) -> list[Snapshot]:
    found: list[Snapshot] = []
    try:
        paths = sorted(directory.glob(f"*{SUFFIX}"))
    except OSError:
        return found
    for path in paths:
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue  # removed under us, or not ours
        if isinstance(data, dict) and isinstance(data.get("pid"), int):
            found.append(data)  # type: ignore[arg-type]  # written by take_snapshot
    return found


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Merged(Collector):
    """Snapshots of several processes as one set of metric families."""

    def __init__(self, snapshots: Iterable[Snapshot]) -> None:
        self._snapshots = list(snapshots)

    def collect(self) -> Iterator[Metric]:
        own = os.getpid()
        live = [s for s in self._snapshots if s["pid"] == own or is_running(s["pid"])]
        live_pids = {s["pid"] for s in live}
        merged: dict[str, tuple[Family, dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = {}
        for snapshot in self._snapshots:
            running = snapshot["pid"] in live_pids
            for family in snapshot["families"]:
                if family["type"] == "gauge" and not running:
                    continue  # a dead worker holds no connections
                entry = merged.setdefault(family["name"], (family, {}))
                values = entry[1]
                for name, labels, raw in family["samples"]:
                    value = float("nan") if raw is None else float(raw)
                    key = (name, tuple(sorted(labels.items())))
                    if key not in values:
                        values[key] = value
                    else:
                        values[key] = _combine(family, name, values[key], value)
        for family, values in merged.values():
            metric = Metric(family["name"], family["help"], family["type"], family["unit"])
            for (name, label_pairs), value in values.items():
                metric.add_sample(name, dict(label_pairs), value)
            yield metric
        workers = GaugeMetricFamily(
            "qunliao_workers", "Worker processes whose numbers this answer covers"
        )
        workers.add_metric([], len(live_pids))
        yield workers


def _combine(family: Family, sample: str, old: float, new: float) -> float:
    if sample.endswith("_created"):
        return min(old, new)  # the counter exists since the first worker made it
    if family["type"] == "gauge" and family["merge"] == "max":
        return max(old, new)
    if family["type"] == "gauge" and family["merge"] == "min":
        return min(old, new)
    return old + new


def render_directory(directory: Path) -> bytes:
    return generate_latest(_Merged(read_snapshots(directory)))


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Listener6(_Listener):
    address_family = socket.AF_INET6


def start_listener(host: str, port: int, directory: Path) -> ThreadingHTTPServer:
    """The metrics_listen server: GET /metrics (every worker's numbers) in a daemon thread of
    `qunliao serve`'s own process. Raises OSError when the address cannot be bound."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self._answer(404, b"not found: metrics are at /metrics\n", "text/plain")
                return
            self._answer(200, render_directory(directory), CONTENT_TYPE_LATEST)

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics listener: " + format, *args)

    server = (_Listener6 if ":" in host else _Listener)((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics-listener", daemon=True).start()
    return server


def stop_listener(server: ThreadingHTTPServer) -> None:
    with contextlib.suppress(OSError):
        server.shutdown()
        server.server_close()
