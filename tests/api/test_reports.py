"""Reports on the real engine equal an oracle computed in Python from the same events.

One dataset (three merchants, two windows around the 2024 US/EU DST switches, duplicates,
events without customer or dimensions, failed payments with decline codes, disputes) is indexed
once per module; hypothesis then generates queries (zones incl. DST, +05:30, +05:45; every
granularity; filters; groupBy).
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch

from api.keys import create_key
from ingest.contract import Event
from ingest.loadgen import Generator, LoadSpec
from pulse.naming import Names
from pulse.settings import Settings
from tests.api.conftest import post
from tests.api.helpers import METRICS, Acc, dedupe, index_events, iso, to_events

MERCHANTS = ("m00000", "m00001", "m00002")
WINDOWS = (
    (datetime(2024, 3, 7, tzinfo=UTC), datetime(2024, 3, 14, tzinfo=UTC)),
    (datetime(2024, 10, 29, tzinfo=UTC), datetime(2024, 11, 5, tzinfo=UTC)),
    # Lord Howe's half-hour fall-back, 2024-04-07 02:00 +11:00 -> 01:30 +10:30
    (datetime(2024, 4, 3, tzinfo=UTC), datetime(2024, 4, 10, tzinfo=UTC)),
)
ZONES = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu",
         "Australia/Adelaide", "Australia/Lord_Howe")  # fmt: skip
DIMS = {
    "EVENT_TYPE": ("payment", "refund", "dispute", "page_view", "__none__"),
    "STATUS": ("succeeded", "failed", "__none__"),
    "PAYMENT_METHOD": ("card", "wallet", "__none__"),
    "COUNTRY": ("DE", "FR", "US"),
    "CHANNEL": ("web", "app", "pos"),
    "DEVICE": ("ios", "desktop"),
    "STORE_ID": ("m00000-st0", "m00001-st1"),
    "DECLINE_CODE": ("insufficient_funds", "do_not_honor", "expired_card", "__none__"),
}
# The payment-health metrics and what explains them (issue 16).
HEALTH = ("FAILED_PAYMENTS", "REFUND_RATE", "DISPUTES", "DISPUTE_RATE")
HEALTH_DIMS = ("DECLINE_CODE", "EVENT_TYPE", "STATUS", "PAYMENT_METHOD")
QUERY = """
query($m: ID!, $s: DateTime!, $e: DateTime!, $metrics: [Metric!]!, $g: Granularity, $tz: String,
      $groupBy: [Dimension!], $filters: [DimensionFilter!], $limit: Int) {
  metrics(merchantId: $m, range: {start: $s, end: $e}, metrics: $metrics, granularity: $g,
          timezone: $tz, groupBy: $groupBy, filters: $filters, limit: $limit) {
    series { group { dimension value }
             points { start complete values { metric value errorBound } } }
    totals { metric value errorBound }
    meta { sources tookMs }
  }
}
"""


def make_events() -> list[Event]:
    rng = random.Random(5)
    gen = Generator(LoadSpec(merchants=3, seed=5))
    raws: list[dict[str, Any]] = []
    for lo, hi in WINDOWS:
        a, b = int(lo.timestamp() * 1000), int(hi.timestamp() * 1000)
        raws += [gen.event_at(rng.randrange(a, b)) for _ in range(1500)]
    for raw in raws[::17]:
        raw.pop("customer_id", None)
        raw.pop("device", None)
    for raw in raws[5::37]:  # loadgen's ~0.2% are too few to test rates with
        raw["event_type"] = "dispute"
    for raw in raws[11::13]:  # some failed payments without a code
        raw.pop("decline_code", None)
    raws += [dict(r) for r in raws[::29]]  # producer retries: same event_id again
    return to_events(raws)


class Events(list[Event]):
    def __repr__(self) -> str:  # keep hypothesis' failure reports readable
        return f"<{len(self)} events>"


@pytest.fixture(scope="module")
def dataset(api_client: OpenSearch, api_settings: Settings, api_names: Names) -> list[Event]:
    events = make_events()
    index_events(api_client, api_settings, api_names, events, ingested_ms=1)
    return Events(dedupe(events))


@pytest.fixture(scope="module")
def keys(api_client: OpenSearch, api_names: Names) -> dict[str, str]:
    return {m: create_key(api_client, api_names, m, admin=False)[0] for m in MERCHANTS}


def dim_value(event: Event, dim: str) -> str:
    value = getattr(event, dim.lower())
    return "__none__" if value is None else str(value)


def label(ts_ms: int, gran: str, tz: ZoneInfo) -> Any:
    """The bucket an instant belongs to, as local calendar fields (independent of the API)."""
    local = datetime.fromtimestamp(ts_ms / 1000, tz)
    if gran == "MINUTE":
        return (local.replace(second=0, microsecond=0, tzinfo=None), local.utcoffset())
    if gran == "HOUR":
        return _hour_label(ts_ms, tz)
    if gran == "DAY":
        return local.date()
    if gran == "WEEK":
        return local.date() - timedelta(days=local.weekday())
    if gran == "MONTH":
        return (local.year, local.month)
    return "all"


def _hour_label(ts_ms: int, tz: ZoneInfo) -> Any:
    """The latest instant <= ts whose local time is on the hour (Lord Howe's repeated 01:30-02:00
    belongs to the 01:00 that began before it): usually ts's wall clock cut to the hour, else
    found minute by minute."""
    local = datetime.fromtimestamp(ts_ms / 1000, tz)
    t = ts_ms - (local.minute * 60 + local.second) * 1000 - local.microsecond // 1000
    while (start := datetime.fromtimestamp(t / 1000, tz)).minute or start.second:
        t -= t % 60_000 or 60_000
    return (start.replace(tzinfo=None, fold=0), start.utcoffset())


def point_label(start: str, gran: str, tz: ZoneInfo) -> Any:
    local = datetime.fromisoformat(start)
    if gran in ("MINUTE", "HOUR"):
        return (local.replace(tzinfo=None), local.utcoffset())
    if gran in ("DAY", "WEEK"):
        return local.date()
    if gran == "MONTH":
        return (local.year, local.month)
    return "all"


def expected_days(start_ms: int, end_ms: int, tz: ZoneInfo) -> int:
    first = datetime.fromtimestamp(start_ms / 1000, tz).date()
    last = datetime.fromtimestamp((end_ms - 1) / 1000, tz).date()
    return (last - first).days + 1


def passes(event: Event, filters: list[dict[str, Any]]) -> bool:
    for f in filters:
        inside = dim_value(event, f["dimension"]) in f["values"]
        if inside == f["exclude"]:
            return False
    return True


def oracle(events: list[Event], q: dict[str, Any]) -> dict[Any, dict[Any, Acc]]:
    tz = ZoneInfo(q["tz"])
    s, e = q["start_ms"], q["end_ms"]
    out: dict[Any, dict[Any, Acc]] = defaultdict(lambda: defaultdict(Acc))
    for ev in events:
        if ev.merchant_id != q["m"] or not s <= ev.occurred_at_ms < e:
            continue
        if not passes(ev, q["filters"]):
            continue
        group = tuple(dim_value(ev, d) for d in q["groupBy"])
        out[group][label(ev.occurred_at_ms, q["g"], tz)].add(ev)
        out[group]["total"].add(ev)
        out[None]["total"].add(ev)
    return out


def close(metric: str, got: dict[str, Any], acc: Acc) -> None:
    want = acc.value(metric)
    if want is None:
        assert got["value"] is None, (metric, got)
        return
    assert got["value"] is not None, (metric, got, want)
    if metric == "UNIQUE_CUSTOMERS":
        assert abs(got["value"] - want) <= got["errorBound"], (got, want)
    else:  # exact: the same integers, divided the same way
        assert got["value"] == want, (metric, got, want)
        assert got["errorBound"] == 0, (metric, got)


def top_groups(cells: dict[Any, dict[Any, Acc]], metric: str, limit: int) -> list[Any]:
    scored = []
    for group, by in cells.items():
        if group is None:
            continue
        v = by["total"].value(metric)
        scored.append((v is None, -(v or 0.0), group))
    return [g for _, _, g in sorted(scored)[:limit]]


@st.composite
def queries(
    draw: st.DrawFn, metrics: tuple[str, ...] = METRICS, dims: tuple[str, ...] = tuple(DIMS)
) -> dict[str, Any]:
    gran = draw(st.sampled_from(["MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "ALL"]))
    lo, _ = draw(st.sampled_from(WINDOWS))
    start = lo + timedelta(minutes=draw(st.integers(0, 7 * 24 * 60)))
    longest = {"MINUTE": 6 * 60, "HOUR": 4 * 24 * 60}.get(gran, 9 * 24 * 60)
    end = start + timedelta(minutes=draw(st.integers(1, longest)))
    group_by = draw(st.lists(st.sampled_from(dims), max_size=2, unique=True))
    filters = draw(st.lists(st.sampled_from(dims), max_size=2, unique=True))
    return {
        "m": draw(st.sampled_from(MERCHANTS)),
        "start_ms": int(start.timestamp() * 1000),
        "end_ms": int(end.timestamp() * 1000),
        "metrics": draw(st.lists(st.sampled_from(metrics), min_size=1, max_size=4, unique=True)),
        "g": gran,
        "tz": draw(st.sampled_from(ZONES)),
        "groupBy": group_by,
        "filters": [
            {
                "dimension": d,
                "values": draw(st.lists(st.sampled_from(DIMS[d]), min_size=1, unique=True)),
                "exclude": draw(st.booleans()),
            }
            for d in filters
        ],
        "limit": draw(st.integers(1, 4)),
    }


ALL_EVENTS = {
    "m": "m00001", "start_ms": 1_709_769_600_000, "end_ms": 1_709_769_720_000,
    "metrics": ["EVENTS"], "g": "ALL", "tz": "UTC", "groupBy": [], "filters": [], "limit": 1,
}  # fmt: skip


def ask(http: TestClient, key: str, q: dict[str, Any]) -> dict[str, Any]:
    variables = {
        **{k: q[k] for k in ("m", "metrics", "g", "tz", "groupBy", "filters", "limit")},
        "s": iso(q["start_ms"]),
        "e": iso(q["end_ms"]),
    }
    body = post(http, key, QUERY, variables)
    assert "errors" not in body, body
    report: dict[str, Any] = body["data"]["metrics"]
    return report


def check(report: dict[str, Any], cells: dict[Any, dict[Any, Acc]], q: dict[str, Any]) -> None:
    tz = ZoneInfo(q["tz"])
    for got, metric in zip(report["totals"], q["metrics"], strict=True):
        close(metric, got, cells[None]["total"] if None in cells else Acc())
    groups = top_groups(cells, q["metrics"][0], q["limit"]) if q["groupBy"] else [()]
    got_groups = [tuple(v["value"] for v in s["group"]) for s in report["series"]]
    assert got_groups == groups
    for series, group in zip(report["series"], groups, strict=True):
        labels = [point_label(p["start"], q["g"], tz) for p in series["points"]]
        assert len(set(labels)) == len(labels)
        if q["g"] == "DAY":
            assert len(labels) == expected_days(q["start_ms"], q["end_ms"], tz)
        by = cells.get(group, {})
        assert set(k for k in by if k != "total") <= set(labels)  # no datum outside a bucket
        for point, lab in zip(series["points"], labels, strict=True):
            for got, metric in zip(point["values"], q["metrics"], strict=True):
                close(metric, got, by.get(lab, Acc()))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(q=queries())
@example(q=ALL_EVENTS)
def test_reports_equal_the_oracle(
    http: TestClient, dataset: list[Event], keys: dict[str, str], q: dict[str, Any]
) -> None:
    report = ask(http, keys[q["m"]], q)
    assert report["meta"]["sources"] == ["raw"]
    check(report, oracle(dataset, q), q)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(q=queries(HEALTH, HEALTH_DIMS))
def test_payment_health_reports_equal_the_oracle(
    http: TestClient, dataset: list[Event], keys: dict[str, str], q: dict[str, Any]
) -> None:
    """FAILED_PAYMENTS, REFUND_RATE, DISPUTES, DISPUTE_RATE by decline code and the rest:
    counts exact, rates null exactly where their denominator is 0."""
    report = ask(http, keys[q["m"]], q)
    check(report, oracle(dataset, q), q)


def test_dataset_has_what_the_health_metrics_need(dataset: list[Event]) -> None:
    """The generated queries can only find a wrong rate if the data has every case."""
    codes = {e.decline_code for e in dataset if e.status == "failed"}
    assert {"insufficient_funds", "do_not_honor", None} <= codes
    assert sum(e.event_type == "dispute" for e in dataset) > 50
    assert any(e.event_type == "refund" for e in dataset)


def test_dst_day_buckets_in_new_york(
    http: TestClient, dataset: list[Event], keys: dict[str, str]
) -> None:
    q = {"m": "m00000", "start_ms": int(datetime(2024, 3, 9, 5, tzinfo=UTC).timestamp() * 1000),
         "end_ms": int(datetime(2024, 3, 12, 4, tzinfo=UTC).timestamp() * 1000),
         "metrics": ["EVENTS", "GROSS_SALES"], "g": "DAY", "tz": "America/New_York",
         "groupBy": [], "filters": [], "limit": 10}  # fmt: skip
    report = ask(http, keys["m00000"], q)
    starts = [p["start"] for p in report["series"][0]["points"]]
    assert starts == ["2024-03-09T00:00:00-05:00", "2024-03-10T00:00:00-05:00",
                      "2024-03-11T00:00:00-04:00"]  # fmt: skip
    check(report, oracle(dataset, q), q)
    assert date(2024, 3, 10) in oracle(dataset, q)[()]


def test_hourly_across_lord_howes_half_hour_fall_back(
    http: TestClient, dataset: list[Event], keys: dict[str, str]
) -> None:
    """Local 01:30-02:00 happens twice on 2024-04-07 in Australia/Lord_Howe: the 01:00 bucket
    (+11:00) runs 90 minutes, to 02:00 +10:30, as the engine's buckets do."""
    q = {"m": "m00000", "start_ms": int(datetime(2024, 4, 6, 12, tzinfo=UTC).timestamp() * 1000),
         "end_ms": int(datetime(2024, 4, 6, 18, tzinfo=UTC).timestamp() * 1000),
         "metrics": ["EVENTS", "GROSS_SALES"], "g": "HOUR", "tz": "Australia/Lord_Howe",
         "groupBy": [], "filters": [], "limit": 10}  # fmt: skip
    report = ask(http, keys["m00000"], q)
    starts = [p["start"] for p in report["series"][0]["points"]]
    assert starts[2:5] == ["2024-04-07T01:00:00+11:00", "2024-04-07T02:00:00+10:30",
                           "2024-04-07T03:00:00+10:30"]  # fmt: skip
    check(report, oracle(dataset, q), q)
