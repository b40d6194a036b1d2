"""api.report's shaping against the original implementation, kept here as the reference.

Shaping was made cheaper (metric dispatch once per report, no Cell per empty bucket, shared
values for empty buckets); the Report must stay exactly the same, float for float.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api import planner
from api.cells import Cell, Uniques
from api.model import HOUR_MS, Dimension, Granularity, Metric, QueryPlan, Source
from api.report import MetricValue, Point, Report, Series, rank, shape
from api.sources import Cells, GroupKey
from pulse.settings import Settings

SETTINGS = Settings(max_buckets=5000, max_points=50_000)


# --- the reference: api.report's shaping as it was, unchanged --------------------------------


def _metric_value_reference(metric: Metric, cell: Cell) -> MetricValue:
    value: float | None
    bound: float | None = 0.0
    if metric is Metric.EVENTS:
        value = cell.events
    elif metric is Metric.PAYMENTS:
        value = cell.paid
    elif metric is Metric.GROSS_SALES:
        value = cell.gross / 1000
    elif metric is Metric.REFUNDS:
        value = cell.refunds / 1000
    elif metric is Metric.NET_SALES:
        value = (cell.gross - cell.refunds) / 1000
    elif metric is Metric.AVERAGE_TICKET:
        value = cell.gross / 1000 / cell.paid if cell.paid else None
    elif metric is Metric.PAYMENT_SUCCESS_RATE:
        tried = cell.paid + cell.failed
        value = cell.paid / tried if tried else None
    elif metric is Metric.NEW_CUSTOMERS:  # added with the metrics (decision 0211)
        value = cell.new_customers
    elif metric is Metric.RETURNING_CUSTOMERS:
        value = cell.returning_customers
    # The payment-health metrics (issue 16), by DESIGN.md's definitions.
    elif metric is Metric.FAILED_PAYMENTS:
        value = cell.failed
    elif metric is Metric.REFUND_RATE:
        value = cell.refunds / cell.gross if cell.gross else None
    elif metric is Metric.DISPUTES:
        value = cell.disputes
    elif metric is Metric.DISPUTE_RATE:
        value = cell.disputes / cell.paid if cell.paid else None
    else:
        value, bound = cell.uniques.value()
    return MetricValue(
        metric, None if value is None else float(value), bound if value is not None else None
    )


def _rank_reference(cells: Cells, metric: Metric, limit: int) -> tuple[GroupKey, ...]:
    scored = []
    for (group, bucket), cell in cells.items():
        if group is None or bucket is not None:
            continue
        value = _metric_value_reference(metric, cell).value
        scored.append((value is None, -(value or 0.0), group))
    scored.sort()
    return tuple(group for _, _, group in scored[:limit])


def _shape_reference(
    plan: QueryPlan, cells: Cells, groups: tuple[GroupKey, ...] | None, took_ms: int
) -> Report:
    keys: tuple[GroupKey, ...] = groups if groups is not None else ((),)
    series = [
        Series(list(zip(plan.group_by, group, strict=True)), _points_reference(plan, cells, group))
        for group in keys
    ]
    total = cells.get((None, None), Cell())
    split = plan.split
    sources = []
    if split and split.rollups:
        sources.append(Source.ROLLUPS.value)
    firsts = {Metric.NEW_CUSTOMERS, Metric.RETURNING_CUSTOMERS} & set(plan.metrics)
    if (split and split.raw) or firsts:
        sources.append(Source.RAW.value)
    if firsts:
        sources.append("first_purchases")
    return Report(
        series=series,
        totals=[_metric_value_reference(m, total) for m in plan.metrics],
        sources=sources,
        watermark_ms=split.watermark_ms if split else None,
        took_ms=took_ms,
        timezone=plan.timezone,
    )


def _points_reference(plan: QueryPlan, cells: Cells, group: GroupKey) -> list[Point]:
    bounds = plan.boundaries
    out = []
    for i in range(plan.buckets):
        cell = cells.get((group, i), Cell())
        start = plan.start_ms if plan.granularity is Granularity.ALL else bounds[i]
        complete = bounds[i] >= plan.start_ms and bounds[i + 1] <= min(plan.end_ms, plan.now_ms)
        out.append(Point(start, [_metric_value_reference(m, cell) for m in plan.metrics], complete))
    return out


# --- plans and cells -------------------------------------------------------------------------

# The served 30-day hourly report's metrics.
FIVE = [
    Metric.EVENTS,
    Metric.PAYMENTS,
    Metric.GROSS_SALES,
    Metric.NET_SALES,
    Metric.PAYMENT_SUCCESS_RATE,
]
ALL_METRICS = list(Metric)
GROUPS: tuple[GroupKey, ...] = (("card", "web"), ("cash", "pos"), ("wallet", "app"))


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def make_plan(
    start: str,
    end: str,
    metrics: list[Metric],
    gran: Granularity = Granularity.HOUR,
    tz: str = "UTC",
    group_by: tuple[Dimension, ...] = (),
    now: str = "2030-01-01T00:00:00+00:00",
    split: str = "both",
) -> QueryPlan:
    plan = planner.build_plan(
        "m1",
        datetime.fromisoformat(start),
        datetime.fromisoformat(end),
        metrics,
        granularity=gran,
        timezone=tz,
        group_by=group_by,
        now_ms=ms(now),
    )
    plan = planner.time_buckets(plan, SETTINGS)
    first = -(-plan.start_ms // HOUR_MS) * HOUR_MS
    hours = set(range(first, plan.end_ms, HOUR_MS)) if split == "both" else set()
    return planner.split_sources(plan, hours, first + 5 * HOUR_MS if hours else None)


PLANS = {
    # The served 30-day hourly report, open hour included: the last buckets are incomplete.
    "30d_hourly_ungrouped": make_plan(
        "2024-05-02T00:00:00+00:00", "2024-06-01T00:00:00+00:00", FIVE,
        now="2024-05-31T21:30:00+00:00",
    ),
    "grouped_daily_berlin_dst": make_plan(
        "2024-03-25T10:00:00+00:00", "2024-04-05T00:00:00+00:00", ALL_METRICS,
        Granularity.DAY, "Europe/Berlin", (Dimension.PAYMENT_METHOD, Dimension.CHANNEL),
    ),
    "all_ragged_raw_only": make_plan(
        "2024-05-02T00:17:00+00:00", "2024-05-09T13:45:00+00:00", ALL_METRICS,
        Granularity.ALL, "Asia/Kolkata", split="raw",
    ),
    "hourly_lord_howe_grouped": make_plan(
        "2024-10-05T00:00:00+00:00", "2024-10-08T00:00:00+00:00",
        [Metric.AVERAGE_TICKET, Metric.UNIQUE_CUSTOMERS, Metric.REFUNDS],
        Granularity.HOUR, "Australia/Lord_Howe", (Dimension.COUNTRY,),
        now="2024-10-06T03:10:00+00:00",
    ),
    "minutes_kathmandu": make_plan(
        "2024-05-02T00:00:30+00:00", "2024-05-02T06:00:00+00:00", [Metric.PAYMENTS],
        Granularity.MINUTE, "Asia/Kathmandu",
    ),
}  # fmt: skip


def random_cell(rng: random.Random, sketches: bool) -> Cell:
    paid = rng.choice([0, 0, 1, rng.randint(0, 10**6)])
    gross = rng.choice([0, rng.randint(0, 10**12), 10**15 + rng.randint(0, 999)])
    uniques = Uniques(estimate=float(rng.randint(0, 5000)), bound=rng.choice([0.0, 1.0, 37.0]))
    if sketches and rng.random() < 0.3:
        uniques.add_hashes([rng.getrandbits(63) for _ in range(rng.randint(0, 40))])
        uniques.overflow = float(rng.randint(0, 3))
    return Cell(
        events=rng.randint(0, 10**7),
        paid=paid,
        gross=gross,
        failed=rng.choice([0, rng.randint(0, 500)]),
        refunds=rng.choice([0, rng.randint(0, gross + 1)]),
        disputes=rng.choice([0, 0, rng.randint(0, 50)]),
        uniques=uniques,
        new_customers=rng.choice([0, rng.randint(0, 5000)]),
        returning_customers=rng.choice([0, rng.randint(0, 5000)]),
    )


def random_cells(plan: QueryPlan, seed: int, density: float) -> Cells:
    """Cells for the plan's buckets (``density`` of them present), group totals, the total."""
    rng = random.Random(seed)
    sketches = Metric.UNIQUE_CUSTOMERS in plan.metrics
    groups: tuple[GroupKey, ...] = GROUPS if plan.group_by else ((),)
    width = len(plan.group_by)
    cells: Cells = {}
    if rng.random() < 0.9:
        cells[(None, None)] = random_cell(rng, sketches)
    for group in groups:
        key = group[:width]
        cells[(key, None)] = random_cell(rng, sketches)
        for i in range(plan.buckets):
            if rng.random() < density:
                cells[(key, i)] = random_cell(rng, sketches)
    return cells


def chosen(plan: QueryPlan, cells: Cells) -> tuple[GroupKey, ...] | None:
    return rank(cells, plan.metrics[0], plan.limit) if plan.group_by else None


def assert_same(got: Report, want: Report) -> None:
    assert got == want
    assert repr(got) == repr(want)  # also float vs int, which == lets through


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PLANS)
@pytest.mark.parametrize("density", [0.0, 0.6, 1.0])
def test_shape_equals_the_reference(name: str, density: float) -> None:
    plan = PLANS[name]
    cells = random_cells(plan, seed=len(name), density=density)
    groups = chosen(plan, cells)
    assert_same(shape(plan, cells, groups, 17), _shape_reference(plan, cells, groups, 17))


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(PLANS)),
    seed=st.integers(min_value=0, max_value=2**32),
    density=st.floats(min_value=0.0, max_value=1.0),
    no_groups=st.booleans(),
)
def test_shape_and_rank_equal_the_reference_on_random_cells(
    name: str, seed: int, density: float, no_groups: bool
) -> None:
    plan = PLANS[name]
    cells = random_cells(plan, seed, density)
    for metric in plan.metrics:
        assert rank(cells, metric, 2) == _rank_reference(cells, metric, 2)
    groups = chosen(plan, cells)
    if no_groups and groups is not None:
        groups = ()  # grouped, but no group had data: no series
    assert_same(shape(plan, cells, groups, 3), _shape_reference(plan, cells, groups, 3))


def test_shape_of_an_unsplit_plan_without_any_cells() -> None:
    plan = planner.time_buckets(
        planner.build_plan(
            "m1",
            datetime(2024, 5, 2, tzinfo=UTC),
            datetime(2024, 5, 3, tzinfo=UTC),
            ALL_METRICS,
            now_ms=0,
        ),
        SETTINGS,
    )
    assert_same(shape(plan, {}, None, 0), _shape_reference(plan, {}, None, 0))
