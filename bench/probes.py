"""Freshness probes: events with known send times, and pollers that see when GraphQL shows them.

Probe events belong to dedicated merchants, so their count in a GraphQL answer says exactly
how many have arrived. Their ``event_id``s are chosen so that Kafka's default partitioner
(murmur2 of the key, as the collector and Fluent Bit key by ``event_id``) puts every probe in
partition 0: one partition is consumed in order, so "the count reached i" means "probe i is
visible" rather than "some i probes are". A probe's freshness is measured from the moment
before it was sent to the moment the answer that first counted it was received (an upper
bound; the poll interval is its resolution).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from kafka import KafkaProducer
from kafka.partitioner import murmur2
from opensearchpy import OpenSearch

from ingest.contract import to_kafka_message
from storage import rollup_schema

RAW_MERCHANT = "bench-probe-raw"
ROLLUP_MERCHANT = "bench-probe-rollup"
HOUR_MS = 3_600_000
MINUTE_MS = 60_000

METRICS_QUERY = """
query($m: ID!, $s: DateTime!, $e: DateTime!, $g: Granularity!) {
  metrics(merchantId: $m, range: {start: $s, end: $e}, metrics: [EVENTS], granularity: $g) {
    series { points { start values { metric value } complete } }
    meta { sources watermark tookMs }
  }
}
"""
FRESHNESS_QUERY = """
query($m: ID!) { freshness(merchantId: $m) { ingestedThrough rolledUpThrough } }
"""


def pinned_ids(prefix: str, partitions: int, partition: int = 0) -> Iterator[str]:
    """Unique event ids whose murmur2 key hash lands in ``partition`` of ``partitions``."""
    for n in itertools.count():
        candidate = f"{prefix}-{n:09d}"
        if (murmur2(candidate.encode()) & 0x7FFFFFFF) % partitions == partition:
            yield candidate


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def parse_iso(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class GraphQL:
    """A small GraphQL client with the bench's admin key; errors raise."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.client = httpx.Client(timeout=10, headers={"Authorization": f"Bearer {key}"})

    def ask(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(self.url, json={"query": query, "variables": variables})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL error: {body['errors'][0].get('message')}")
        data: dict[str, Any] = body["data"]
        return data

    def close(self) -> None:
        self.client.close()


@dataclass
class Probe:
    """One probe event: when it was sent, during which step, and when it was first seen."""

    index: int
    sent_at: float
    step: int
    seen_at: float | None = None

    @property
    def latency_s(self) -> float | None:
        return None if self.seen_at is None else self.seen_at - self.sent_at


@dataclass
class Transport:
    """Sends one event the way the current step's load travels (collector or straight Kafka)."""

    collector_url: str
    producer: KafkaProducer
    topic: str
    write_key: str  # an admin write key: the collector authenticates every request
    path: str = "collector"
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def send(self, event: dict[str, Any]) -> None:
        if self.path == "collector":
            body = orjson.dumps([event])
            headers = {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.write_key}",
            }
            self.http.post(self.collector_url, content=body, headers=headers).raise_for_status()
        else:
            key = str(event["event_id"]).encode()
            self.producer.send(self.topic, key=key, value=to_kafka_message(event)).get(10)

    def close(self) -> None:
        self.http.close()


@dataclass
class ProbeLane:
    """Probes of one merchant, sent every ``every_s``; ``observe(count)`` marks them seen.

    ``occurred_at`` gives each probe's event time: now for the raw lane, a fixed instant in
    an already closed hour for the rollup lane (a late event: its hour must be re-rolled).
    """

    merchant: str
    every_s: float
    occurred_at: Callable[[], int]
    ids: Iterator[str]
    probes: list[Probe] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send_one(self, transport: Transport, step: int) -> None:
        event = {
            "event_id": next(self.ids),
            "merchant_id": self.merchant,
            "event_type": "page_view",
            "occurred_at": self.occurred_at(),
        }
        sent_at = time.time()
        transport.send(event)
        with self.lock:
            self.probes.append(Probe(len(self.probes), sent_at, step))

    def observe(self, count: int, at: float) -> None:
        """The answer received at ``at`` counted ``count`` probes: probes < count are seen."""
        with self.lock:
            for probe in self.probes[: max(0, count)]:
                if probe.seen_at is None:
                    probe.seen_at = at

    def outstanding(self) -> int:
        with self.lock:
            return sum(1 for p in self.probes if p.seen_at is None)


def raw_count(gql: GraphQL, merchant: str, start_ms: int, end_ms: int) -> int:
    """EVENTS for ``merchant`` over [start, end) at MINUTE granularity: always the raw path."""
    data = gql.ask(
        METRICS_QUERY, {"m": merchant, "s": iso(start_ms), "e": iso(end_ms), "g": "MINUTE"}
    )
    points = data["metrics"]["series"][0]["points"] if data["metrics"]["series"] else []
    return int(sum(_events(p) for p in points))


def complete_hour_count(gql: GraphQL, merchant: str, hour_ms: int) -> int:
    """EVENTS of one closed hour, counted only when the API marks the bucket complete."""
    variables = {"m": merchant, "s": iso(hour_ms), "e": iso(hour_ms + HOUR_MS), "g": "HOUR"}
    data = gql.ask(METRICS_QUERY, variables)
    series = data["metrics"]["series"]
    if not series:
        return 0
    point = series[0]["points"][0]
    return int(_events(point)) if point["complete"] else 0


def rollup_events(client: OpenSearch, alias: str, merchant: str, hour_ms: int) -> int:
    """EVENTS of one merchant-hour as the rollup documents hold it (0 before the first run).

    Read from the engine because GraphQL may answer a changed hour from raw (rightly): only
    the rollup documents say whether the rollup job has caught up with the probes.
    """
    body = {
        "size": 0,
        "query": {
            "bool": {
                "filter": [
                    {"term": {rollup_schema.MERCHANT: merchant}},
                    {"term": {rollup_schema.HOUR: hour_ms}},
                    rollup_schema.TOTALS_ONLY,
                ]
            }
        },
        "aggs": {"events": {"sum": {"field": rollup_schema.EVENTS}}},
    }
    answer = client.search(index=alias, body=body, ignore_unavailable=True)
    value = answer.get("aggregations", {}).get("events", {}).get("value")
    return int(value or 0)


def _events(point: dict[str, Any]) -> float:
    for value in point["values"]:
        if value["metric"] == "EVENTS":
            return float(value["value"] or 0)
    return 0.0


def freshness(gql: GraphQL, merchant: str) -> tuple[float | None, float | None]:
    """(ingestedThrough, rolledUpThrough) as epoch seconds (None when unknown)."""
    data = gql.ask(FRESHNESS_QUERY, {"m": merchant})["freshness"]
    return parse_iso(data.get("ingestedThrough")), parse_iso(data.get("rolledUpThrough"))
