"""Prometheus metrics of one indexer, in a registry of its own (several indexers may share a
process in tests and benchmarks). Served on ``/metrics`` when ``indexer_metrics_port`` > 0;
0 disables the endpoint (docs/decisions/0012)."""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import Counter as CountOf
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# How prometheus_client writes a bucket's ``le`` (``0.1``, ``5.0``, ``+Inf``); untyped there.
_le: Callable[[float], str] = floatToGoString

BULK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 10, 50, 100, 500, 1000, 2000, 5000, 10_000, 20_000)
BYTES_BUCKETS = (1e3, 1e4, 1e5, 1e6, 2.5e6, 5e6, 10e6, 15e6, 25e6)
# Seconds from produced to searchable: sub-second when healthy, minutes to hours when behind.
FRESHNESS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "pulse_indexer_"
        self.consumed = Counter(p + "consumed", "Messages polled from events.raw", registry=r)
        self.indexed = Counter(p + "indexed", "Documents created in raw indices", registry=r)
        self.duplicates = Counter(
            p + "duplicates", "Events already durable (replays, re-sends)", ["where"], registry=r
        )
        self.dlq = Counter(p + "dlq", "Messages sent to events.dlq", ["reason"], registry=r)
        self.retries = Counter(p + "retries", "Retried write attempts", ["cause"], registry=r)
        self.bulk_seconds = Histogram(
            p + "bulk_seconds", "Latency of one _bulk request", buckets=BULK_BUCKETS, registry=r
        )
        self.batch_docs = Histogram(
            p + "batch_docs", "Messages per batch", buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_bytes = Histogram(
            p + "batch_bytes", "Document bytes per batch", buckets=BYTES_BUCKETS, registry=r
        )
        self.lag = Gauge(p + "lag", "Messages behind the partition end", ["partition"], registry=r)
        self.committed = Counter(p + "commits", "Offset commits", ["result"], registry=r)
        self.paused = Gauge(p + "paused", "1 while fetching is paused (backpressure)", registry=r)
        # Kafka record timestamp (when the shipper produced the event) -> document created.
        # Not occurred_at: late events (hours, days) are by design and would measure the
        # senders' lateness rather than the pipeline's delay.
        self.freshness = BatchHistogram(
            p + "freshness_seconds",
            "Seconds from the Kafka record timestamp to the document being indexed",
            FRESHNESS_BUCKETS,
        )
        r.register(self.freshness)
        # Names fixed: alert rules (k8s, docs/operations.md) are written against them.
        self.undecodable = Counter(
            p + "undecodable_batches",
            "Record batches that could not be decoded (distinct batches; decision 0110)",
            ["partition"],
            registry=r,
        )
        self.blocked = Gauge(
            p + "partition_blocked",
            "1 while the partition is stopped at an undecodable batch",
            ["partition"],
            registry=r,
        )

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        if port > 0:
            start_http_server(port, addr=addr, registry=self.registry)


class BatchHistogram(Collector):
    """A histogram observed a batch at a time: the writer records one freshness per document
    it creates, and prometheus_client's ``Histogram.observe`` (a lock and a Python loop over
    the buckets per value) cost ≈ 2.5 µs per document; here a batch finds each value's bucket
    with ``bisect`` and takes the lock once (docs/decisions/0280). Exposed as the same
    ``<name>_bucket`` (cumulative, ``le``), ``<name>_count`` and ``<name>_sum`` samples."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = sorted(float(b) for b in buckets)
        self._counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound (+Inf)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: Sequence[float]) -> None:
        """Record every value; one equal to a bound counts in that bound's bucket (``le``)."""
        bounds = self.bounds
        found = CountOf(bisect_left(bounds, value) for value in values)
        total = sum(values)
        with self._lock:
            counts = self._counts
            for index, count in found.items():
                counts[index] += count
            self._sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, buckets = 0, []
        for bound, count in zip([*self.bounds, math.inf], counts, strict=True):
            cumulative += count
            buckets.append((_le(bound), cumulative))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], buckets, total)
        yield family
