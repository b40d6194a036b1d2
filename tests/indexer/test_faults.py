"""The indexer as a process (``python -m indexer``) through crashes, engine stalls and
rebalances: at the end, the distinct documents equal the distinct events sent and every sum
matches — nothing lost, nothing counted twice."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from ingest.loadgen import DAY_MS, Generator, LoadSpec, now_ms
from ingest.sinks import kafka_producer, send_to_kafka
from pulse.clients import opensearch_client
from pulse.engines import start_opensearch, wait_until
from pulse.naming import Names
from pulse.settings import Settings
from tests.indexer.conftest import (
    FAST,
    IndexerProcess,
    distinct_events,
    expected_totals,
    indexed_totals,
    read_dlq,
)

# Short sessions: a killed member's partitions move only once its session expires, and a
# Tansu group join takes about half the session timeout.
QUICK_GROUP = {"kafka_session_timeout_ms": 1500, "kafka_heartbeat_interval_ms": 300}


def _events(count: int, seed: int) -> list[dict[str, Any]]:
    gen = Generator(LoadSpec(merchants=50, seed=seed, duplicate_rate=0.05, late_rate=0.02))
    now = now_ms()
    return list(gen.stream(gen.events(count, now - 2 * DAY_MS, now)))


def _producer(bootstrap: str, topic: str, events: list[dict[str, Any]], chunks: int,
              pause_s: float) -> threading.Thread:  # fmt: skip
    """Send ``events`` in ``chunks`` slices, ``pause_s`` apart, on a background thread."""

    def run() -> None:
        producer = kafka_producer(bootstrap)
        size = -(-len(events) // chunks)
        for i in range(0, len(events), size):
            send_to_kafka(producer, topic, events[i : i + size])
            time.sleep(pause_s)
        producer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _settle(client: OpenSearch, names: Names, expected: dict[str, Any], timeout_s: float) -> bool:
    return wait_until(
        lambda: indexed_totals(client, names)["count"] >= expected["count"], timeout_s, 0.5
    )


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    settings: Settings, topics: Names, os_client: OpenSearch, tmp_path: Path
) -> None:
    s = settings.model_copy(update={**FAST, **QUICK_GROUP})
    bootstrap = s.kafka_bootstrap or ""
    events = _events(21_000, seed=5)
    expected = expected_totals(distinct_events(events))
    feeding = _producer(bootstrap, topics.topic_raw, events, chunks=50, pause_s=0.8)
    rng = random.Random(3)
    for i in range(20):
        victim = IndexerProcess(s, tmp_path / f"indexer-{i}.log")
        assert victim.wait_assigned(), victim.log_text()
        time.sleep(rng.uniform(0.0, 1.2))  # mid-poll, mid-bulk, mid-commit: wherever it is
        victim.kill()
    feeding.join(120)
    last = IndexerProcess(s, tmp_path / "indexer-last.log")
    # Wait until it runs (signal handlers in place): the others may have indexed everything
    # already, and a SIGTERM during interpreter start-up is not a clean shutdown to judge.
    assert last.wait_assigned(), last.log_text()
    assert _settle(os_client, topics, expected, 120), last.log_text()
    assert last.terminate() == 0
    assert indexed_totals(os_client, topics) == expected
    assert read_dlq(bootstrap, topics.topic_dlq, 0, timeout_s=1) == []


@pytest.mark.slow
def test_search_engine_stall_loses_nothing_and_needs_no_restart(
    settings: Settings, topics: Names, tmp_path: Path
) -> None:
    engine = start_opensearch()  # our own: freezing the shared one would stall other tests
    try:
        s = settings.model_copy(
            update={**FAST, "opensearch_url": engine.address, "engine_timeout_s": 2.0}
        )
        client = opensearch_client(engine.address)
        first, second = _events(1500, seed=8), _events(1500, seed=9)
        expected_first = expected_totals(distinct_events(first))
        expected = expected_totals(distinct_events(first + second))
        indexer = IndexerProcess(s, tmp_path / "indexer.log")
        _producer(s.kafka_bootstrap or "", topics.topic_raw, first, 1, 0).join(60)
        assert _settle(client, topics, expected_first, 60), indexer.log_text()
        os.kill(engine.pid, signal.SIGSTOP)
        try:
            _producer(s.kafka_bootstrap or "", topics.topic_raw, second, 3, 0.5).join(60)
            time.sleep(3 * s.engine_timeout_s)  # several bulk timeouts while frozen
        finally:
            os.kill(engine.pid, signal.SIGCONT)
        assert _settle(client, topics, expected, 90), indexer.log_text()
        assert indexer.proc.poll() is None  # recovered by itself, same process
        assert "write retry" in indexer.log_text()  # the stall was really felt
        assert indexer.terminate() == 0
        assert indexed_totals(client, topics) == expected
    finally:
        engine.stop()


@pytest.mark.slow
def test_two_indexers_share_partitions_through_rebalances(
    settings: Settings, topics: Names, os_client: OpenSearch, tmp_path: Path
) -> None:
    s = settings.model_copy(update={**FAST, **QUICK_GROUP})
    events = _events(8000, seed=6)
    expected = expected_totals(distinct_events(events))
    first = IndexerProcess(s, tmp_path / "a.log")
    assert first.wait_assigned()
    feeding = _producer(s.kafka_bootstrap or "", topics.topic_raw, events, chunks=16, pause_s=0.5)
    time.sleep(1.5)
    second = IndexerProcess(s, tmp_path / "b.log")
    assert second.wait_assigned()
    assert wait_until(lambda: first.log_text().count("partitions assigned") >= 2, 30)
    time.sleep(1.0)
    assert first.terminate() == 0  # leaves mid-stream: the second takes every partition
    assert wait_until(lambda: second.log_text().count("partitions assigned") >= 2, 30)
    feeding.join(60)
    # Every event arrives, but under load the last few dozen trail by more than 90 s (seen at
    # load 8: 7,963 of 8,000 at 90 s, all a few seconds later). The promise is "nothing lost
    # or doubled", not a speed: wait long enough for a loaded machine.
    assert _settle(os_client, topics, expected, 180), second.log_text()
    assert second.terminate() == 0
    assert indexed_totals(os_client, topics) == expected
    assert read_dlq(s.kafka_bootstrap or "", topics.topic_dlq, 0, timeout_s=1) == []
