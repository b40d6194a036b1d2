"""The rollup scheduler's metrics, read over HTTP from its /metrics endpoint: run outcomes
and durations, the committed watermark and its age, the holds."""

from __future__ import annotations

import math
import time

import httpx
from opensearchpy import OpenSearch
from prometheus_client.parser import text_string_to_metric_families

from pulse.clients import opensearch_client
from pulse.engines import free_port
from pulse.naming import Names
from pulse.settings import Settings
from rollups import state
from rollups.job import RollupJob
from rollups.scheduler import RollupScheduler


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_runs_watermark_and_holds_over_http(
    rsettings: Settings, names: Names, os_client: OpenSearch
) -> None:
    now_ms = int(time.time() * 1000)
    job = RollupJob(os_client, rsettings, names, clock=lambda: now_ms)  # time stands still
    job.bootstrap()
    scheduler = RollupScheduler(job, rsettings.rollup_interval_s)
    port = free_port()
    scheduler.metrics.serve(port, addr="127.0.0.1")
    assert math.isnan(scrape(port)["pulse_rollups_watermark_age_seconds"])  # no run yet

    scheduler.tick()
    state.hold(os_client, names, "reprocess.test", 0, 3_600_000, "test")
    scheduler.tick()  # watermark is current: skipped, but every tick reads the state

    seen = scrape(port)
    assert seen["pulse_rollups_runs_total{outcome=ok}"] == 1
    assert seen["pulse_rollups_runs_total{outcome=skipped}"] == 1
    assert seen["pulse_rollups_run_duration_seconds_count"] == 1
    watermark = state.watermark(os_client, names)
    assert watermark is not None
    assert seen["pulse_rollups_watermark_timestamp_seconds"] == watermark / 1000
    assert 0 <= seen["pulse_rollups_watermark_age_seconds"] < 60
    assert seen["pulse_rollups_holds"] == 1
    assert abs(seen["pulse_rollups_last_run_timestamp_seconds"] - time.time()) < 60


def test_a_failed_run_is_counted_and_timed(rsettings: Settings, names: Names) -> None:
    dead = opensearch_client(f"http://127.0.0.1:{free_port()}", timeout_s=1)
    scheduler = RollupScheduler(RollupJob(dead, rsettings, names), rsettings.rollup_interval_s)
    port = free_port()
    scheduler.metrics.serve(port, addr="127.0.0.1")
    scheduler.tick()
    seen = scrape(port)
    assert seen["pulse_rollups_runs_total{outcome=failed}"] == 1
    assert seen["pulse_rollups_run_duration_seconds_count"] == 1
    assert math.isnan(seen["pulse_rollups_watermark_age_seconds"])
