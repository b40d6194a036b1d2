"""Rollups + raw together: answers equal the oracle after a rollup run, while rollups lag
(late events ingested after the watermark), and again after the next run — across every
seam the planner makes (open hour, changed hours, half-hour zones' boundary hours)."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch

from api.keys import create_key
from ingest.contract import Event
from ingest.loadgen import HOUR_MS, Generator, LoadSpec
from pulse.naming import Names
from pulse.settings import Settings
from rollups.job import catch_up
from tests.api.conftest import post
from tests.api.helpers import dedupe, index_events, iso, to_events
from tests.api.test_reports import (
    HEALTH,
    HEALTH_DIMS,
    MERCHANTS,
    WINDOWS,
    Events,
    ask,
    check,
    make_events,
    oracle,
    queries,
)


class World:
    """The events indexed so far (deduplicated, as the engine holds them)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lagging = False  # late events indexed after the last rollup run

    def __repr__(self) -> str:
        return f"<world of {len(self.events)} events>"


@pytest.fixture(scope="module")
def world(api_client: OpenSearch, api_settings: Settings, api_names: Names) -> World:
    w = World()
    events = make_events()
    index_events(api_client, api_settings, api_names, events, ingested_ms=1)
    catch_up(api_client, api_settings, api_names)
    w.events = Events(dedupe(events))
    return w


@pytest.fixture(scope="module")
def keys(api_client: OpenSearch, api_names: Names) -> dict[str, str]:
    return {m: create_key(api_client, api_names, m, admin=False)[0] for m in MERCHANTS}


def late_events(seed: int) -> list[Event]:
    """Events for old hours (changed after their rollup) and for the open hour."""
    rng = random.Random(seed)
    gen = Generator(LoadSpec(merchants=3, seed=seed))
    lo, hi = (int(t.timestamp() * 1000) for t in WINDOWS[0])
    now = int(time.time() * 1000)
    raws = [gen.event_at(rng.randrange(lo, hi)) for _ in range(150)]
    raws += [gen.event_at(rng.randrange(now - now % HOUR_MS, now)) for _ in range(30)]
    return to_events(raws)


def run_queries(http: TestClient, world: World, keys: dict[str, str], q: dict[str, Any]) -> Any:
    report = ask(http, keys[q["m"]], q)
    check(report, oracle(world.events, q), q)
    return report["meta"]["sources"]


SEEN: set[str] = set()


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(q=queries())
def test_rolled_up_answers_equal_the_oracle(
    http: TestClient, world: World, keys: dict[str, str], q: dict[str, Any]
) -> None:
    SEEN.update(run_queries(http, world, keys, q))


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(q=queries(HEALTH, HEALTH_DIMS))
def test_rolled_up_payment_health_equals_the_oracle(
    http: TestClient, world: World, keys: dict[str, str], q: dict[str, Any]
) -> None:
    SEEN.update(run_queries(http, world, keys, q))


COMPARE_QUERY = """
query($m: ID!, $s: DateTime!, $e: DateTime!, $cs: DateTime!, $ce: DateTime!,
      $metrics: [Metric!]!, $g: Granularity, $tz: String, $groupBy: [Dimension!],
      $filters: [DimensionFilter!], $limit: Int) {
  metrics(merchantId: $m, range: {start: $s, end: $e}, metrics: $metrics, granularity: $g,
          timezone: $tz, groupBy: $groupBy, filters: $filters, limit: $limit,
          compareTo: {start: $cs, end: $ce}) {
    ...R
    comparison { ...R }
  }
}
fragment R on Report {
  series { group { dimension value } points { start complete values { metric value errorBound } } }
  totals { metric value errorBound }
  meta { sources tookMs }
}
"""


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(q=queries(HEALTH, HEALTH_DIMS), shift_days=st.sampled_from([-235, -7, 1, 235]))
def test_payment_health_comparisons_equal_the_oracle(
    http: TestClient, world: World, keys: dict[str, str], q: dict[str, Any], shift_days: int
) -> None:
    """compareTo: the comparison is the same report over the other range (another window or
    the same one shifted), every part of it exact."""
    shift = shift_days * 24 * HOUR_MS
    other = {**q, "start_ms": q["start_ms"] + shift, "end_ms": q["end_ms"] + shift}
    variables = {
        **{k: q[k] for k in ("m", "metrics", "g", "tz", "groupBy", "filters", "limit")},
        "s": iso(q["start_ms"]), "e": iso(q["end_ms"]),
        "cs": iso(other["start_ms"]), "ce": iso(other["end_ms"]),
    }  # fmt: skip
    body = post(http, keys[q["m"]], COMPARE_QUERY, variables)
    assert "errors" not in body, body
    report = body["data"]["metrics"]
    check(report, oracle(world.events, q), q)
    check(report["comparison"], oracle(world.events, other), other)
    SEEN.update(report["comparison"]["meta"]["sources"])


def test_rollups_were_used() -> None:
    assert "rollups" in SEEN


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(q=queries())
def test_answers_stay_exact_while_rollups_lag_and_after_they_catch_up(
    http: TestClient,
    world: World,
    keys: dict[str, str],
    q: dict[str, Any],
    api_client: OpenSearch,
    api_settings: Settings,
    api_names: Names,
) -> None:
    if not world.lagging:  # once: late events after the watermark, not rolled up yet
        before = len(world.events)
        late = late_events(seed=99)
        index_events(api_client, api_settings, api_names, late, int(time.time() * 1000))
        world.events = Events(dedupe([*world.events, *late]))
        world.lagging = len(world.events) > before  # the late events are new ones
        assert world.lagging
    run_queries(http, world, keys, q)


def test_kolkata_daily_stitches_boundary_hours_from_raw(
    http: TestClient, world: World, keys: dict[str, str],
    api_client: OpenSearch, api_settings: Settings, api_names: Names,
) -> None:  # fmt: skip
    catch_up(api_client, api_settings, api_names)
    lo, hi = (int(t.timestamp() * 1000) for t in WINDOWS[0])
    for tz in ("Asia/Kolkata", "Asia/Kathmandu", "America/New_York"):
        q = {"m": "m00000", "start_ms": lo, "end_ms": hi, "g": "DAY", "tz": tz, "groupBy": [],
             "filters": [], "limit": 10,
             "metrics": ["EVENTS", "NET_SALES", "UNIQUE_CUSTOMERS", "AVERAGE_TICKET"]}  # fmt: skip
        sources = run_queries(http, world, keys, q)
        assert "rollups" in sources
        if tz != "America/New_York":
            assert "raw" in sources  # the boundary hours
