"""`pulse status` against the real engines: each section read from where it lives, and a
non-zero exit exactly when something needs a person."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer
from opensearchpy import OpenSearch
from rich.console import Console
from typer.testing import CliRunner

from ingest import loadgen
from ingest.sinks import kafka_producer, send_to_kafka
from pulse.naming import Names
from pulse.settings import Settings, get_settings
from pulsectl.cli import app
from pulsectl.status import PartitionLag, RollupState, ShardState, Status, collect
from pulsectl.status_view import render
from reprocess import runs
from reprocess.plan import Plan
from rollups import state
from rollups.shards import ShardLeases, read_all

HOUR_S = 3600


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """The CLI reads its settings once per process (get_settings): each test's own env."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def dead_letter(producer: KafkaProducer, names: Names, reason: str, age_s: float) -> None:
    failed_at = str(int((time.time() - age_s) * 1000)).encode()
    headers = [("pulse.reason", reason.encode()), ("pulse.failed_at", failed_at)]
    producer.send(names.topic_dlq, value=b"{}", headers=headers)


def test_status_reads_every_section(
    settings: Settings, topics: Names, os_client: OpenSearch
) -> None:
    names = topics
    producer = kafka_producer(str(settings.kafka_bootstrap))
    send_to_kafka(producer, names.topic_raw, loadgen.Generator(loadgen.LoadSpec()).events(40, 0, 1))
    for reason, age in (
        ("invalid_json", 60),
        ("invalid_json", 2 * HOUR_S),
        ("missing:event_id", 10),
    ):
        dead_letter(producer, names, reason, age)
    dead_letter(producer, names, "invalid_json", 3 * 86_400)  # older than a day: not counted
    producer.flush()
    producer.close()
    state.ensure_state_index(os_client, names)
    watermark = int((time.time() - 120) * 1000)
    state.commit(os_client, names, None, state.State(settings.generation, watermark, None), {})

    n = settings.rollup_shards
    worker = ShardLeases(os_client, names, "rollups-a", n, 60_000)
    worker.balance(read_all(os_client, names, n), n, int(time.time() * 1000))
    worker.release([0])  # given back, and nobody took it

    status = collect(settings, sample_s=0.5)

    # No indexer runs in this test: 40 messages wait and nothing commits.
    assert status.problems == [
        "indexer is down (group commits 0 msg/s, 40 waiting)",
        "rollup shards 0 have no live worker",
    ]
    assert not status.embedded
    assert [(c.name, c.alive) for c in status.components] == [
        ("indexer", False),
        ("rollups", True),
    ]
    assert sum(p.lag for p in status.lag) == 40 and len(status.lag) == settings.raw_partitions
    assert all(p.change == 0 for p in status.lag)  # no indexer: nothing moves
    assert status.dead_letters is not None
    assert status.dead_letters.by_reason == {
        "hour": {"invalid_json": 1, "missing:event_id": 1},
        "day": {"invalid_json": 2, "missing:event_id": 1},
    }
    assert status.rollups is not None and status.rollups.age_s is not None
    assert 120 <= status.rollups.age_s < 180
    owners = {sh.shard: sh.owner for sh in status.rollups.shards}
    assert owners == {0: None, **{i: "rollups-a" for i in range(1, n)}}
    assert status.runs == [] and status.generation == settings.generation
    assert status.lifecycle is not None


def test_what_needs_a_person_exits_non_zero(
    settings: Settings, topics: Names, os_client: OpenSearch
) -> None:
    names = topics
    state.ensure_state_index(os_client, names)
    behind = int((time.time() - 2 * HOUR_S) * 1000)
    state.commit(os_client, names, None, state.State(settings.generation, behind, None), {})
    now_ms = int(time.time() * 1000)
    run = runs.create(os_client, names, Plan("replay", "g2", now_ms - 86_400_000, now_ms, []))
    later = time.time() + 3 * HOUR_S  # the run has not moved for 3 hours by then

    status = collect(settings, sample_s=0, now=later)

    assert any("watermark is" in p for p in status.problems), status.problems
    assert any(run.run_id in p and "planned" in p for p in status.problems), status.problems
    assert [r.run_id for r in status.runs] == [run.run_id]

    env = {
        "PULSE_OPENSEARCH_URL": str(settings.opensearch_url),
        "PULSE_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
        "PULSE_NAMESPACE": settings.namespace,
        "PULSE_STATE_DIR": settings.state_dir,
    }
    result = CliRunner().invoke(app, ["status", "--json", "--sample", "0"], env=env)
    assert result.exit_code == 1, result.output
    printed = json.loads(result.stdout)
    assert any("watermark is" in p for p in printed["problems"])
    screen = CliRunner().invoke(app, ["status", "--sample", "0"], env=env)
    assert screen.exit_code == 1 and "needs a person" in screen.stdout


def test_the_screen_keeps_many_partitions_to_the_ones_that_matter() -> None:
    lags = [PartitionLag(p, 1200 if p == 3 else 0, 300 if p == 3 else 0) for p in range(48)]
    status = Status("2026-01-01T00:00:00+00:00", False, "g1", 0, [], lags, 95.0)
    console = Console(width=120, record=True)
    console.print(render(status))
    screen = console.export_text()
    assert "events.raw/3" in screen and "47 more partitions" in screen
    assert "events.raw/4 " not in screen and len(screen.splitlines()) < 30


def test_the_screen_groups_rollup_shards_by_worker() -> None:
    shards = [
        ShardState(i, None if i == 5 else f"w{i % 2}", "2026-01-01T00:00:00+00:00", 60.0 + i)
        for i in range(64)
    ]
    rollups = RollupState("2026-01-01T00:00:00+00:00", 60.0, [], shards)
    status = Status("2026-01-01T00:00:00+00:00", False, "g1", 0, rollups=rollups)
    console = Console(width=160, record=True)
    console.print(render(status))
    screen = console.export_text()
    assert "worker w0" in screen and "worker w1" in screen and "shard 5" in screen
    assert "no live worker" in screen and "slowest 2m behind" in screen  # shard 63: 123 s
    assert "shard 6 " not in screen and len(screen.splitlines()) < 40


def test_no_engines_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        "PULSE_STATE_DIR": str(tmp_path),
        "PULSE_OPENSEARCH_URL": "",
        "PULSE_KAFKA_BOOTSTRAP": "",
    }
    result = CliRunner().invoke(app, ["status"], env=env)
    assert result.exit_code == 2 and "pulse up" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
