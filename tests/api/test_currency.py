"""Money in several currencies (DESIGN.md "Money never adds different currencies") against an
oracle computed in Python from the same events.

Four merchants: m00000 sells in EUR only, m00002 in JPY only (single-currency: no change),
m00001 in EUR, USD and GBP, m00003 in INR and CHF (CHF has no rates in the second window, so
converting it is FX_RATE_MISSING). The events span the 2024 US/EU DST switches, carry
duplicates, are rolled up once and then joined by late events and re-sent duplicates after
the watermark, so reports stitch rollups (day packs and detail documents) with raw events.
Hypothesis draws queries over zones with DST and +05:30/+05:45, every granularity, CURRENCY
groups and filters, and reportingCurrency; counts and sums must be exact.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
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
from rollups.job import catch_up
from storage import fx
from tests.api.conftest import post
from tests.api.helpers import METRICS, Acc, dedupe, index_events, iso, to_events
from tests.api.test_reports import (
    DIMS,
    ZONES,
    Events,
    dim_value,
    expected_days,
    label,
    passes,
    point_label,
    top_groups,
)

MERCHANTS = ("m00000", "m00001", "m00002", "m00003")
SELLS = {"m00000": ("EUR",), "m00001": ("EUR", "USD", "GBP"), "m00002": ("JPY",),
         "m00003": ("INR", "CHF")}  # fmt: skip
WINDOWS = (
    (datetime(2024, 3, 7, tzinfo=UTC), datetime(2024, 3, 14, tzinfo=UTC)),
    (datetime(2024, 10, 29, tzinfo=UTC), datetime(2024, 11, 5, tzinfo=UTC)),
)
TARGETS = ("EUR", "USD", "JPY", "GBP", "CHF")
MONEY = {"GROSS_SALES", "REFUNDS", "NET_SALES", "AVERAGE_TICKET"}
RATIOS = {"REFUND_RATE"}  # money divided by money: converted and checked, no currency of its own
PAID_MONEY = {"GROSS_SALES", "AVERAGE_TICKET", "NET_SALES", "REFUND_RATE"}
REFUND_MONEY = {"REFUNDS", "NET_SALES", "REFUND_RATE"}
CURRENCY_VALUES = ("EUR", "USD", "GBP", "JPY", "INR", "CHF", "__none__")
QUERY = """
query($m: ID!, $s: DateTime!, $e: DateTime!, $metrics: [Metric!]!, $g: Granularity, $tz: String,
      $groupBy: [Dimension!], $filters: [DimensionFilter!], $limit: Int, $rc: String,
      $f: ForceSource) {
  metrics(merchantId: $m, range: {start: $s, end: $e}, metrics: $metrics, granularity: $g,
          timezone: $tz, groupBy: $groupBy, filters: $filters, limit: $limit,
          reportingCurrency: $rc, forceSource: $f) {
    series { group { dimension value }
             points { start values { metric value errorBound currency } } }
    totals { metric value errorBound currency }
    meta { sources }
  }
}
"""


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


def make_rates() -> str:
    """A rates file: daily EUR, JPY and INR, GBP every fourth day (each rate serves 7 days),
    CHF in the first window only."""
    rng = random.Random(11)
    lines = ["date,currency,per_usd"]
    for lo, hi in WINDOWS:
        day = lo.date() - timedelta(days=8)
        while day <= hi.date() + timedelta(days=1):
            for cur, base in (("EUR", "0.9"), ("JPY", "150"), ("INR", "83"), ("GBP", "0.8"),
                              ("CHF", "0.88")):  # fmt: skip
                if cur == "GBP" and day.toordinal() % 4:
                    continue
                if cur == "CHF" and lo.month == 10:
                    continue
                value = Decimal(base) * (1 + Decimal(rng.randrange(-500, 500)) / 10_000)
                lines.append(f"{day.isoformat()},{cur},{value}")
            day += timedelta(days=1)
    return "\n".join(lines) + "\n"


def _with_currency(raws: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    for raw in raws:
        if "currency" in raw:
            raw["currency"] = rng.choice(SELLS[raw["merchant_id"]])
    return raws


def make_events(seed: int, per_window: int) -> list[Event]:
    rng = random.Random(seed)
    gen = Generator(LoadSpec(merchants=4, zipf_s=0.3, seed=seed))
    raws: list[dict[str, Any]] = []
    for lo, hi in WINDOWS:
        a, b = int(lo.timestamp() * 1000), int(hi.timestamp() * 1000)
        raws += [gen.event_at(rng.randrange(a, b)) for _ in range(per_window)]
    raws = _with_currency(raws, rng)
    raws += [dict(r) for r in raws[::23]]  # producer retries: same event_id again
    return to_events(raws)


class FxAcc(Acc):
    """The oracle cell, plus money per (currency, UTC day) and the currencies it mixes."""

    def __init__(self, rates: fx.RateTable, target: str | None) -> None:
        super().__init__()
        self.rates, self.target = rates, target
        self.gross_by: dict[tuple[str, date], int] = defaultdict(int)
        self.refunds_by: dict[tuple[str, date], int] = defaultdict(int)
        self.paid_cur: set[str] = set()
        self.refund_cur: set[str] = set()

    def add(self, e: Event) -> None:
        super().add(e)
        cur = e.currency or "__none__"
        if e.event_type == "payment" and e.status == "succeeded":
            self.paid_cur.add(cur)
            self.gross_by[(cur, _day(e.occurred_at_ms))] += e.amount_milli or 0
        if e.event_type == "refund" and e.amount_milli:
            self.refund_cur.add(cur)
            self.refunds_by[(cur, _day(e.occurred_at_ms))] += e.amount_milli

    def _convert(self, amounts: dict[tuple[str, date], int]) -> int:
        assert self.target is not None
        total = sum(
            (Fraction(v) * rate_factor(self.rates, c, self.target, d) for (c, d), v in
             amounts.items() if v),
            Fraction(0),
        )  # fmt: skip
        return round(total)

    def value(self, metric: str) -> float | None:
        if self.target is not None:
            # Only the money the metric uses needs rates (expected_error's rule): GROSS_SALES
            # is answered while a refund currency lacks a rate.
            if metric in PAID_MONEY:
                self.gross = self._convert(self.gross_by)
            if metric in REFUND_MONEY:
                self.refunds = self._convert(self.refunds_by)
        return super().value(metric)

    def currencies(self, metric: str) -> set[str]:
        paid = self.paid_cur if metric in PAID_MONEY else set()
        refunded = self.refund_cur if metric in REFUND_MONEY else set()
        return paid | refunded


def rate_factor(rates: fx.RateTable, currency: str, target: str, day: date) -> Fraction:
    """The oracle's own reading of the rule: latest rate on or before the day, <= 7 days."""

    def per_usd(cur: str) -> Fraction:
        if cur == "USD":
            return Fraction(1)
        known = [(d, v) for d, v in zip(rates.days.get(cur, []), rates.values.get(cur, []),
                                        strict=True) if d <= day]  # fmt: skip
        if not known or (day - known[-1][0]).days > 7:
            raise LookupError((cur, day))
        return known[-1][1]

    return Fraction(1) if currency == target else per_usd(target) / per_usd(currency)


def oracle(events: list[Event], q: dict[str, Any], rates: fx.RateTable) -> dict[Any, Any]:
    tz = ZoneInfo(q["tz"])

    def acc() -> FxAcc:
        return FxAcc(rates, q["rc"])

    out: dict[Any, dict[Any, FxAcc]] = defaultdict(lambda: defaultdict(acc))
    for ev in events:
        if ev.merchant_id != q["m"] or not q["start_ms"] <= ev.occurred_at_ms < q["end_ms"]:
            continue
        if not passes(ev, q["filters"]):
            continue
        group = tuple(dim_value(ev, d) for d in q["groupBy"])
        out[group][label(ev.occurred_at_ms, q["g"], tz)].add(ev)
        out[group]["total"].add(ev)
        out[None]["total"].add(ev)
    out.setdefault(None, defaultdict(acc))
    return out


def expected_error(cells: dict[Any, Any], q: dict[str, Any]) -> str | None:
    """FX_RATE_MISSING, BAD_USER_INPUT (mixed currencies) or None, as the contract says."""
    total: FxAcc = cells[None]["total"]
    money = [m for m in q["metrics"] if m in MONEY | RATIOS]
    if q["rc"] is not None and money:
        # The API converts every amount the asked metrics use (each source breaks down the
        # paid and refunded amounts it reads): a rate is needed for each of those.
        wants_gross = any(m in PAID_MONEY for m in money)
        wants_refunds = any(m in REFUND_MONEY for m in money)
        used = {k for k, v in total.gross_by.items() if v and wants_gross}
        used |= {k for k, v in total.refunds_by.items() if v and wants_refunds}
        try:
            for cur, day in used:
                rate_factor(total.rates, cur, q["rc"], day)
        except LookupError:
            return "FX_RATE_MISSING"
        return None
    mixed = any(len(total.currencies(m)) > 1 for m in money)
    return "BAD_USER_INPUT" if mixed and "CURRENCY" not in q["groupBy"] else None


def expected_currency(cells: dict[Any, Any], q: dict[str, Any], metric: str,
                      group: tuple[str, ...] | None) -> str | None:  # fmt: skip
    if metric not in MONEY:
        return None
    if q["rc"] is not None:
        return str(q["rc"])
    if group is not None and "CURRENCY" in q["groupBy"]:
        value = group[q["groupBy"].index("CURRENCY")]
        return None if value == "__none__" else value
    total: FxAcc = cells[None]["total"]
    found = total.currencies(metric) or total.currencies("NET_SALES")
    return None if len(found) != 1 or found == {"__none__"} else next(iter(found))


def same(metric: str, got: dict[str, Any], acc: FxAcc) -> None:
    want = acc.value(metric)
    if metric == "UNIQUE_CUSTOMERS":
        assert abs(got["value"] - (want or 0)) <= got["errorBound"], (got, want)
    else:
        assert got["value"] == want, (metric, got, want)  # exact: same integer milli / 1000


def check(report: dict[str, Any], cells: dict[Any, Any], q: dict[str, Any]) -> None:
    tz = ZoneInfo(q["tz"])
    total: FxAcc = cells[None]["total"]
    for got, metric in zip(report["totals"], q["metrics"], strict=True):
        if metric in MONEY | RATIOS and q["rc"] is None and len(total.currencies(metric)) > 1:
            assert got["value"] is None and got["currency"] is None, got  # across CURRENCY groups
            continue
        same(metric, got, total)
        assert got["currency"] == expected_currency(cells, q, metric, None), (metric, got)
    groups = top_groups(cells, q["metrics"][0], q["limit"]) if q["groupBy"] else [()]
    assert [tuple(v["value"] for v in s["group"]) for s in report["series"]] == groups
    for series, group in zip(report["series"], groups, strict=True):
        labels = [point_label(p["start"], q["g"], tz) for p in series["points"]]
        if q["g"] == "DAY":
            assert len(labels) == expected_days(q["start_ms"], q["end_ms"], tz)
        by = cells.get(group, {})
        assert {k for k in by if k != "total"} <= set(labels)
        for point, lab in zip(series["points"], labels, strict=True):
            for got, metric in zip(point["values"], q["metrics"], strict=True):
                same(metric, got, by.get(lab) or FxAcc(total.rates, q["rc"]))
                assert got["currency"] == expected_currency(cells, q, metric, group), got


class World:
    def __init__(self, events: list[Event], rates: fx.RateTable) -> None:
        self.events, self.rates = Events(events), rates

    def __repr__(self) -> str:
        return f"<world of {len(self.events)} events>"


@pytest.fixture(scope="module")
def world(api_client: OpenSearch, api_settings: Settings, api_names: Names) -> World:
    rates = fx.parse_csv(make_rates())
    assert fx.load(api_client, api_names, rates).new == len(rates)
    again = fx.load(api_client, api_names, rates)  # idempotent: the same file changes nothing
    assert (again.new, again.changed, again.unchanged) == (0, 0, len(rates))
    events = make_events(seed=3, per_window=1000)
    index_events(api_client, api_settings, api_names, events, ingested_ms=1)
    catch_up(api_client, api_settings, api_names)
    # After the watermark: late events into rolled-up hours, and retries of old events.
    late = make_events(seed=4, per_window=60) + events[::41]
    index_events(api_client, api_settings, api_names, late, int(time.time() * 1000))
    table = fx.table(d.doc() for d in rates)
    return World(dedupe([*events, *late]), table)


@pytest.fixture(scope="module")
def keys(api_client: OpenSearch, api_names: Names) -> dict[str, str]:
    return {m: create_key(api_client, api_names, m, admin=False)[0] for m in MERCHANTS}


DIMENSIONS = {**DIMS, "CURRENCY": CURRENCY_VALUES}


@st.composite
def queries(draw: st.DrawFn) -> dict[str, Any]:
    gran = draw(st.sampled_from(["HOUR", "DAY", "WEEK", "ALL"]))
    lo, _ = draw(st.sampled_from(WINDOWS))
    start = lo + timedelta(minutes=draw(st.integers(0, 7 * 24 * 60)))
    longest = 3 * 24 * 60 if gran == "HOUR" else 9 * 24 * 60
    end = start + timedelta(minutes=draw(st.integers(1, longest)))
    dims = ["CURRENCY", "CURRENCY", *DIMS]  # CURRENCY drawn more often
    group_by = draw(st.lists(st.sampled_from(dims), max_size=2, unique=True))
    filters = draw(st.lists(st.sampled_from(dims), max_size=1, unique=True))
    money = sorted(MONEY)
    return {
        "m": draw(st.sampled_from(MERCHANTS)),
        "start_ms": int(start.timestamp() * 1000),
        "end_ms": int(end.timestamp() * 1000),
        "metrics": draw(
            st.lists(
                st.sampled_from([*money, *money, *METRICS]), min_size=1, max_size=4, unique=True
            )
        ),
        "g": gran,
        "tz": draw(st.sampled_from(ZONES)),
        "groupBy": group_by,
        "filters": [
            {
                "dimension": d,
                "values": draw(st.lists(st.sampled_from(DIMENSIONS[d]), min_size=1, unique=True)),
                "exclude": draw(st.booleans()),
            }
            for d in filters
        ],
        "limit": draw(st.integers(1, 4)),
        "rc": draw(st.sampled_from([None, None, *TARGETS])),
        "raw": draw(st.sampled_from([False, False, True])),  # forceSource: RAW, admin key
    }


def ask(http: TestClient, key: str, q: dict[str, Any]) -> dict[str, Any]:
    variables = {
        **{k: q[k] for k in ("m", "metrics", "g", "tz", "groupBy", "filters", "limit", "rc")},
        "f": "RAW" if q.get("raw") else "AUTO",
        "s": iso(q["start_ms"]),
        "e": iso(q["end_ms"]),
    }
    body: dict[str, Any] = post(http, key, QUERY, variables)
    return body


def _q(m: str, lo: datetime, days: int, metrics: list[str], **more: Any) -> dict[str, Any]:
    start = int(lo.timestamp() * 1000)
    q = {"m": m, "start_ms": start, "end_ms": start + days * 86_400_000, "metrics": metrics,
         "g": "DAY", "tz": "Asia/Kolkata", "groupBy": [], "filters": [], "limit": 10,
         "rc": None}  # fmt: skip
    return {**q, **more}


MULTI_NO_TARGET = _q("m00001", WINDOWS[0][0], 7, ["GROSS_SALES"])
MULTI_TO_JPY = _q("m00001", WINDOWS[0][0], 7, ["NET_SALES", "AVERAGE_TICKET"], rc="JPY")
CHF_MISSING = _q("m00003", WINDOWS[1][0], 3, ["GROSS_SALES"], rc="EUR", tz="Asia/Kathmandu")
SINGLE = _q("m00000", WINDOWS[1][0], 7, ["GROSS_SALES", "EVENTS"], g="HOUR", tz="UTC")
BY_CURRENCY = _q("m00001", WINDOWS[1][0], 7, ["REFUNDS", "PAYMENTS"], groupBy=["CURRENCY"])
# A ratio of money follows the money rules: an error mixed, converted with reportingCurrency.
RATE_MIXED = _q("m00001", WINDOWS[0][0], 7, ["REFUND_RATE"])
RATE_TO_EUR = _q("m00001", WINDOWS[0][0], 7, ["REFUND_RATE", "PAYMENTS"], rc="EUR")
RATE_BY_CURRENCY = _q("m00001", WINDOWS[1][0], 7, ["REFUND_RATE"], groupBy=["CURRENCY"])


SEEN: set[str] = set()  # what the drawn queries met (test_the_drawn_queries_met_every_case)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(q=queries())
@example(q=MULTI_NO_TARGET)
@example(q=MULTI_TO_JPY)
@example(q=CHF_MISSING)
@example(q=SINGLE)
@example(q=BY_CURRENCY)
@example(q=RATE_MIXED)
@example(q=RATE_TO_EUR)
@example(q=RATE_BY_CURRENCY)
def test_money_per_currency_equals_the_oracle(
    http: TestClient, world: World, keys: dict[str, str], admin_key: str, q: dict[str, Any]
) -> None:
    body = ask(http, admin_key if q.get("raw") else keys[q["m"]], q)
    cells = oracle(world.events, q, world.rates)
    error = expected_error(cells, q)
    if error is not None:
        assert "errors" in body and body["data"] is None, body
        [found] = body["errors"]
        assert found["extensions"]["code"] == error, found
        SEEN.add(error)
        if error == "BAD_USER_INPUT":
            assert "reportingCurrency" in found["message"] and "CURRENCY" in found["message"]
        else:
            assert "on 2024-" in found["message"], found  # names the currency and the date
        return
    assert "errors" not in body, body
    report = body["data"]["metrics"]
    check(report, cells, q)
    SEEN.update(report["meta"]["sources"])
    if q.get("raw"):
        assert report["meta"]["sources"] == ["raw"]
        SEEN.add("forced raw")
    if q["rc"] is not None and any(m in MONEY for m in q["metrics"]):
        SEEN.add("converted")
    if "CURRENCY" in q["groupBy"] and q["rc"] is None:
        SEEN.add("split by CURRENCY")


def test_the_drawn_queries_met_every_case() -> None:
    wanted = {"BAD_USER_INPUT", "FX_RATE_MISSING", "rollups", "raw", "converted", "forced raw"}
    assert wanted | {"split by CURRENCY"} <= SEEN, SEEN


def test_the_examples_reach_every_outcome(
    http: TestClient, world: World, keys: dict[str, str]
) -> None:
    """The fixed examples above mean what their names say (the oracle could agree with a
    wrong API if both never met a case): a mixed error, a missing CHF rate, a stitched
    single-currency answer in EUR, and a conversion that really converts."""
    outcomes = {}
    for name, q in (("mixed", MULTI_NO_TARGET), ("chf", CHF_MISSING), ("single", SINGLE),
                    ("jpy", MULTI_TO_JPY)):  # fmt: skip
        body = ask(http, keys[q["m"]], q)
        outcomes[name] = body
    assert outcomes["mixed"]["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    message = outcomes["mixed"]["errors"][0]["message"]
    assert "EUR, GBP, USD" in message, message
    chf = outcomes["chf"]["errors"][0]
    assert chf["extensions"]["code"] == "FX_RATE_MISSING" and "CHF" in chf["message"], chf
    single = outcomes["single"]["data"]["metrics"]
    assert set(single["meta"]["sources"]) == {"rollups", "raw"}, single["meta"]
    assert single["totals"][0]["currency"] == "EUR" and single["totals"][0]["value"] > 0
    jpy = outcomes["jpy"]["data"]["metrics"]["totals"]
    assert jpy[0]["currency"] == "JPY" and jpy[0]["value"] > 10_000  # yen, not euros


COMPARE = """
query($m: ID!, $rc: String) {
  now: metrics(merchantId: $m, range: {start: "2024-10-29T00:00:00Z", end: "2024-11-02T00:00:00Z"},
               compareTo: {start: "2024-03-08T00:00:00Z", end: "2024-03-12T00:00:00Z"},
               metrics: [GROSS_SALES, REFUNDS], granularity: DAY, timezone: "Asia/Kathmandu",
               reportingCurrency: $rc) {
    totals { value currency }
    comparison { totals { value currency } series { points { values { value currency } } } }
  }
  then: metrics(merchantId: $m, range: {start: "2024-03-08T00:00:00Z", end: "2024-03-12T00:00:00Z"},
                metrics: [GROSS_SALES, REFUNDS], granularity: DAY, timezone: "Asia/Kathmandu",
                reportingCurrency: $rc) {
    totals { value currency }
    series { points { values { value currency } } }
  }
}
"""


def test_comparisons_convert_their_own_range(
    http: TestClient, world: World, keys: dict[str, str]
) -> None:
    body = post(http, keys["m00001"], COMPARE, {"m": "m00001", "rc": "GBP"})
    assert "errors" not in body, body
    now, then = body["data"]["now"], body["data"]["then"]
    assert now["comparison"]["totals"] == then["totals"]
    assert now["comparison"]["series"] == then["series"]
    q = {"m": "m00001", "start_ms": int(WINDOWS[0][0].timestamp() * 1000) + 86_400_000,
         "end_ms": int(WINDOWS[0][0].timestamp() * 1000) + 5 * 86_400_000,
         "metrics": ["GROSS_SALES", "REFUNDS"], "g": "ALL", "tz": "UTC", "groupBy": [],
         "filters": [], "limit": 1, "rc": "GBP"}  # fmt: skip
    total = oracle(world.events, q, world.rates)[None]["total"]
    assert [t["value"] for t in then["totals"]] == [total.value("GROSS_SALES"),
                                                    total.value("REFUNDS")]  # fmt: skip
    assert {t["currency"] for t in [*now["totals"], *then["totals"]]} == {"GBP"}
