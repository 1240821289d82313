"""Prometheus metrics for one process (`GET /metrics`). With --workers N each worker has its own.

Counters that move on every message are plain integers on the objects that own them, read at
scrape time, so the hot path pays nothing; histograms are observed once per batch or request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _Readings(Collector):
    def __init__(self) -> None:
        self.counters: dict[str, tuple[str, Callable[[], float]]] = {}
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def collect(self) -> Iterator[Metric]:
        for name, (text, read) in self.counters.items():
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], read())
            yield counter
        for name, (text, read) in self.gauges.items():
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], read())
            yield gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._readings = _Readings()
        self.registry.register(self._readings)
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

    def counter(self, name: str, text: str, read: Callable[[], float]) -> None:
        self._readings.counters[name] = (text, read)

    def gauge(self, name: str, text: str, read: Callable[[], float]) -> None:
        self._readings.gauges[name] = (text, read)

    def render(self) -> bytes:
        return generate_latest(self.registry)
