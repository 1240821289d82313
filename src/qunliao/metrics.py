"""Prometheus metrics of one process, and how they reach `/metrics` (metrics_workers.py merges
every worker's under `qunliao serve --workers N`).

Counters that move on every message are plain integers on the objects that own them, read at
scrape (or snapshot) time, so the hot path pays nothing; histograms are observed once per batch
or request. HTTP requests are counted through children looked up once per (method, route,
status): one dict lookup and two increments per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from qunliao import metrics_workers
from qunliao.metrics_workers import Merge

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _Readings(Collector):
    def __init__(self) -> None:
        self.counters: dict[str, tuple[str, Callable[[], float]]] = {}
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def collect(self) -> Iterator[Metric]:
        # Copies: a snapshot may be taken in a thread while the app registers a reading.
        for name, (text, read) in list(self.counters.items()):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], read())
            yield counter
        for name, (text, read) in list(self.gauges.items()):
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], read())
            yield gauge


HttpKey = tuple[str, str, int]  # method, route template, status
HttpChildren = tuple[Counter, Histogram]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._readings = _Readings()
        self.registry.register(self._readings)
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.gauge_merge: dict[str, Merge] = dict(metrics_workers.PROCESS_GAUGE_MERGE)
        self.shared: metrics_workers.SharedMetrics | None = None
        self.commit_batch = Histogram(
            "qunliao_commit_batch_size", "Sends per group-commit transaction",
            buckets=BATCH_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.commit_seconds = Histogram(
            "qunliao_commit_seconds", "Time to commit one batch of sends",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.delivery_lag = Histogram(
            "qunliao_delivery_lag_seconds",
            "From commit to the hub handing an event to sockets (bus and polling lag)",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.sync_seconds = Histogram(
            "qunliao_sync_seconds",
            "GET /api/v1/sync answer time (long-polls that waited excluded)",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.http_requests = Counter(
            "qunliao_http_requests", "HTTP requests answered, by route template and status",
            ("method", "route", "status"), registry=self.registry,
        )  # fmt: skip
        self.http_seconds = Histogram(
            "qunliao_http_request_duration_seconds",
            "From a request's arrival to the end of its answer, by route template",
            ("method", "route"), buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._http_children: dict[HttpKey, HttpChildren] = {}

    def counter(self, name: str, text: str, read: Callable[[], float]) -> None:
        self._readings.counters[name] = (text, read)

    def gauge(self, name: str, text: str, read: Callable[[], float], merge: Merge = "sum") -> None:
        """A reading taken at scrape time; `merge` says how workers' readings add up."""
        self._readings.gauges[name] = (text, read)
        self.gauge_merge[name] = merge

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:
            children = (
                self.http_requests.labels(method, route, str(status)),
                self.http_seconds.labels(method, route),
            )
            self._http_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def share(self, directory: Path) -> None:
        """Publish this process's numbers into `directory` and render every worker's from it."""
        self.shared = metrics_workers.SharedMetrics(directory, self.registry, self.gauge_merge)

    def render(self) -> bytes:
        """The exposition text: this process's numbers, or every worker's when shared."""
        if self.shared is not None:
            return self.shared.render()
        return generate_latest(self.registry)
