"""`pulse bench e2e` end to end at a tiny rate: it runs, and writes the documented figures.

Behaviour, not speed: nothing here asserts how fast anything is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from bench.e2e import SCHEMA, E2EConfig, run_and_write
from bench.probes import pinned_ids
from bench.report import targets
from bench.stats import percentile
from pulse.clients import ensure_topics
from pulse.naming import Names
from pulse.settings import Settings

STEP_KEYS = {
    "path", "target_rate", "achieved_rate", "sent", "loadgen_cpu_s", "started_s", "duration_s",
    "freshness_raw_s", "freshness_rollup_s", "consumer_lag", "cpu_cores", "cpu_us_per_event",
}  # fmt: skip
SUMMARY_KEYS = {"sent", "seen", "p50", "p95", "p99", "max"}


@pytest.fixture
def result(settings: Settings, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    env = {
        "PULSE_OPENSEARCH_URL": settings.opensearch_url or "",
        "PULSE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "PULSE_NAMESPACE": settings.namespace,
        "PULSE_RAW_PARTITIONS": "4",
        "PULSE_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "PULSE_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
    }
    config = E2EConfig(
        rates=(40.0,), step_seconds=6.0, paths=("collector", "kafka"), rollup_interval_s=2,
        raw_drain_s=30.0, env=env,
    )  # fmt: skip
    out = tmp_path / "out"
    run_and_write(config, out)
    return json.loads((out / "e2e.json").read_text()), out


def test_e2e_writes_the_documented_figures(
    result: tuple[dict[str, Any], Path], settings: Settings
) -> None:
    doc, out = result
    assert doc["schema"] == SCHEMA
    assert [s["path"] for s in doc["steps"]] == ["collector", "kafka"]
    for step in doc["steps"]:
        assert set(step) >= STEP_KEYS
        assert step["sent"] > 0 and step["achieved_rate"] > 0
        for lane in ("freshness_raw_s", "freshness_rollup_s"):
            assert set(step[lane]) == SUMMARY_KEYS
        raw = step["freshness_raw_s"]
        assert raw["sent"] > 0 and raw["seen"] > 0, raw  # probes travelled to GraphQL
        assert raw["p50"] <= raw["p95"] <= raw["p99"] <= raw["max"]
        assert {"indexer", "api", "collector", "loadgen"} <= set(step["cpu_cores"])
    assert any(row.get("lag") is not None for row in doc["timeseries"])
    check = doc["offsets_check"]
    assert check["read_end_offsets_match_produced"], check
    assert doc["storage"]["raw_docs"] > 0 and doc["storage"]["avg_raw_doc_bytes"] > 0
    for png in ("e2e-timeline.png", "e2e-freshness.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Committed outputs name no host, port or path.
    text = (out / "e2e.json").read_text()
    assert "127.0.0.1" not in text and "localhost" not in text
    assert str(out.parent) not in text
    assert (settings.opensearch_url or "").split("//")[-1] not in text


def test_pinned_probe_ids_land_in_partition_zero(settings: Settings) -> None:
    """The probes' ordering argument rests on this: keyed by these ids, Kafka's default
    partitioner puts every probe into partition 0."""
    ensure_topics(settings, settings.kafka_bootstrap or "")
    topic = Names(settings.namespace).topic_raw
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    ids = pinned_ids("probe-test", settings.raw_partitions)
    partitions = {
        producer.send(topic, key=next(ids).encode(), value=b"{}").get(10).partition
        for _ in range(20)
    }
    producer.close()
    assert partitions == {0}


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 50) is None


def test_targets_judge_raw_p95_and_the_closing_bound() -> None:
    def step(path: str, p95: float, achieved: float, rollup_max: float) -> dict[str, Any]:
        return {
            "path": path, "target_rate": 2000.0, "achieved_rate": achieved,
            "freshness_raw_s": {"p95": p95}, "freshness_rollup_s": {"max": rollup_max},
        }  # fmt: skip

    judged = targets([step("collector", 6.0, 2000, 20.0), step("kafka", 2.0, 1990, 12.0)], 10, 2)
    assert judged["raw_p95_le_5s_at_2000_per_path"]["collector"]["met"] is False
    assert judged["raw_p95_le_5s_at_2000_per_path"]["kafka"]["met"] is True
    # worst 20 s - (10 s interval - 2 s spacing) + 60 s production interval
    assert judged["closed_hour_complete_bound_s"] == 72.0
    assert judged["closed_hour_within_5_min"] is True
    short = targets([step("kafka", 2.0, 1000, 1.0)], 10, 2)
    assert short["raw_p95_le_5s_at_2000_per_path"]["kafka"]["met"] is False  # rate not reached
