"""Helpers for the indexer tests: run it in a thread or as a process, read what it produced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from opensearchpy import OpenSearch

from indexer.consumer import Indexer
from ingest.contract import Event, parse_message, to_kafka_message
from pulse.engines import wait_until
from pulse.naming import Names
from pulse.settings import Settings

FAST = {"bulk_max_docs": 300, "bulk_max_age_ms": 100, "shutdown_timeout_s": 10.0}


@contextmanager
def indexer_thread(settings: Settings) -> Iterator[Indexer]:
    """An in-process indexer; stopped (and checked to have stopped cleanly) on exit."""
    assert settings.opensearch_url and settings.kafka_bootstrap
    indexer = Indexer(settings, settings.opensearch_url, settings.kafka_bootstrap)
    stop = threading.Event()
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(indexer.run(stop)), daemon=True)
    thread.start()
    try:
        yield indexer
    finally:
        stop.set()
        thread.join(60)
    assert result == [True]


class IndexerProcess:
    """``python -m indexer`` with PULSE_* settings, its JSON logs in a file."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> None:
        env = dict(os.environ)
        env.update(settings_env(settings, **overrides))
        env.update(extra_env or {})
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "indexer"], env=env, stdout=self._log, stderr=self._log
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_assigned(self, timeout_s: float = 60) -> bool:
        return wait_until(lambda: "partitions assigned" in self.log_text(), timeout_s, 0.02)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._log.close()

    def terminate(self, timeout_s: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout_s)
        self._log.close()
        return code


def settings_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    values = settings.model_dump() | overrides
    return {f"PULSE_{k.upper()}": str(v) for k, v in values.items() if v is not None}


def distinct_events(messages: list[dict[str, Any]]) -> dict[tuple[str, str], Event]:
    """The first copy of every (merchant_id, event_id), as the indexer keeps it."""
    out: dict[tuple[str, str], Event] = {}
    for raw in messages:
        event = parse_message(to_kafka_message(raw))
        assert isinstance(event, Event)
        out.setdefault((event.merchant_id, event.event_id), event)
    return out


# The keyword fields whose per-value counts the shipper tests compare: the newer contract fields
# (currency, decline_code) and the event types (dispute among them) must survive every codec.
COUNTED = ("merchant_id", "event_type", "currency", "decline_code")


def indexed_totals(client: OpenSearch, names: Names) -> dict[str, Any]:
    """Document count, Σ amount_milli, and per-value counts of ``COUNTED`` over every raw index."""
    client.indices.refresh(index=names.raw_pattern)
    aggs: dict[str, Any] = {"amount": {"sum": {"field": "amount_milli"}}}
    for name in COUNTED:
        aggs[name] = {"terms": {"field": name, "size": 10_000}}
    body = {"size": 0, "track_total_hits": True, "aggs": aggs}
    found = client.search(index=names.raw_pattern, body=body)
    out: dict[str, Any] = {
        "count": found["hits"]["total"]["value"],
        "amount_milli": int(found["aggregations"]["amount"]["value"]),
    }
    for name in COUNTED:
        buckets = found["aggregations"][name]["buckets"]
        out[name] = {b["key"]: b["doc_count"] for b in buckets}
    return out


def expected_totals(events: dict[tuple[str, str], Event]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "count": len(events),
        "amount_milli": sum(e.amount_milli or 0 for e in events.values()),
    }
    for name in COUNTED:
        per: dict[str, int] = {}
        for event in events.values():
            value = getattr(event, name)
            if value is not None:
                per[value] = per.get(value, 0) + 1
        out[name] = per
    return out


def read_dlq(bootstrap: str, topic: str, expect: int, timeout_s: float = 30) -> list[Any]:
    """Every record of the DLQ topic (waits until at least ``expect`` arrived)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
    consumer.assign(parts)
    records: list[Any] = []

    def more() -> bool:
        for batch in consumer.poll(200).values():
            records.extend(batch)
        return len(records) >= expect

    try:
        wait_until(more, timeout_s, 0.0)
        for batch in consumer.poll(500).values():  # anything beyond the expected count
            records.extend(batch)
    finally:
        consumer.close()
    return records


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (partitions without a commit left out)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        found = {p: consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        consumer.close()
    return {p: offset for p, offset in found.items() if offset is not None}


def pulse_dlq(settings: Settings, *args: str) -> str:
    """``pulse dlq ARGS`` as an operator runs it (a process of its own); its stdout."""
    env = {"PATH": "/usr/bin:/bin", **settings_env(settings)}
    done = subprocess.run(
        [sys.executable, "-m", "pulsectl.cli", "dlq", *args], env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout
