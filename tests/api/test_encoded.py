"""Remembered point JSON (api.encoded, decision 0250) answers byte for byte what graphql-core's
executor answers for the same reports, asked once, again, and after any change of content.

No engine: the key lookup answers an admin and the report is ``api.report.shape`` of random
cells (tests/api/test_report_shape's plans: hourly, daily over DST, ALL, Lord Howe's half-hour
DST grouped with unique-customer sketches, minutes in Kathmandu). Each answer goes through the
app's schema (plain executor: keyed points, remembered JSON) and through graphql-core's
executor (no plain path, so nothing remembered): the response bytes (orjson, as the router
encodes them) must be equal. tests/api/test_cache.py does the same on the real engine after
late events, new runs and rewritten packs.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from functools import cache
from typing import Any

import orjson
import pytest
import strawberry
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from api import schema as api_schema
from api.app import EXTENSIONS, create_app
from api.cache import TOKENS
from api.cells import Cell, Uniques, added_up
from api.encoded import Keyed, Memo, Run
from api.keys import Principal
from api.masking import CodedErrors
from api.model import MONEY_KINDS, Granularity, Metric, QueryPlan, ResolvedPlan
from api.money import Currencies
from api.ratelimit import RateLimiter
from api.report import Points, Report, shape
from api.sources import Cells, Ctx, Fixed
from pulse.clients import opensearch_client
from pulse.naming import names_for
from pulse.settings import Settings
from tests.api.test_report_shape import PLANS, chosen, make_plan, random_cell, random_cells

ADMIN = Principal(key_id="test", merchant_id=None, admin=True)
SETTINGS = Settings(
    opensearch_url="http://127.0.0.1:9",  # never contacted: key lookups and reports are stubbed
    namespace="encoded",
    rate_limit_per_minute=10**9,
    rate_limit_shared=False,
)
QUERY = """query($m: ID!, $s: DateTime!, $e: DateTime!) {
  metrics(merchantId: $m, range: {start: $s, end: $e}, metrics: [EVENTS]) {
    series { group { dimension value }
             points { start complete values { metric value errorBound currency } } }
    totals { metric value errorBound currency } meta { sources watermark tookMs }
    comparison { series { points { ...P } } }
  } }
fragment P on Point { when: start values { m: metric v: value c: currency } complete __typename }"""
BENCH = """query($m: ID!, $s: DateTime!, $e: DateTime!) {
  metrics(merchantId: $m, range: {start: $s, end: $e}, metrics: [EVENTS]) {
    series { points { start values { value } } } totals { value } meta { sources tookMs } } }"""
VARIABLES = {"m": "m1", "s": "2024-03-01T00:00:00Z", "e": "2024-03-02T00:00:00Z"}


class Reports(api_schema.Backend):
    """Answers every report with the one the test set."""

    def __init__(self) -> None:
        self.answer: Report | None = None

    def principal(self, ctx: Ctx, key: str) -> Principal | None:
        return ADMIN

    def report(self, ctx: Ctx, plan: QueryPlan) -> Report:
        assert self.answer is not None
        return self.answer


@cache
def schemas(new: bool) -> strawberry.Schema:
    """The app's schema, or graphql-core's executor (no plain path: nothing remembered)."""
    if new:
        return api_schema.build_schema(EXTENSIONS)
    return api_schema.build_schema([CodedErrors], plain_executor=False)


def execute(report: Report, new: bool, query: str = QUERY) -> bytes:
    backend = Reports()
    backend.answer = report
    ctx = Ctx(opensearch_client(SETTINGS.opensearch_url or ""), names_for(SETTINGS), SETTINGS)
    context = api_schema.Context(ctx, RateLimiter(10**9), "Bearer test", backend)
    result = asyncio.run(schemas(new).execute(query, VARIABLES, context_value=context))
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    return orjson.dumps(body)


def same(report: Report, query: str = QUERY) -> bytes:
    """The app's answer (asked twice: the second from remembered JSON) equals graphql-core's."""
    old = execute(report, new=False, query=query)
    assert execute(report, new=True, query=query) == old
    assert execute(report, new=True, query=query) == old
    return old


def money(plan: QueryPlan, currency: str | None) -> Currencies:
    return Currencies({m: currency for m in plan.metrics if m in MONEY_KINDS})


def report_of(
    resolved: ResolvedPlan,
    cells: Cells,
    currency: str | None = "EUR",
    took: int = 3,
    fixed: Fixed | None = None,
) -> Report:
    plan = resolved.plan
    return shape(resolved, cells, chosen(plan, cells), took, money(plan, currency), fixed)


def _bump(cells: Cells, rng: random.Random) -> Cells:
    """The same cells with one counter of one bucket cell changed (a late event, a rebuild)."""
    keys = [k for k in cells if k[1] is not None]
    if not keys:
        return cells
    key = rng.choice(keys)
    field = rng.choice(["events", "paid", "gross", "failed", "refunds", "disputes"])
    changed = replace(cells[key], **{field: getattr(cells[key], field) + 1})
    return {**cells, key: changed}


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(sorted(PLANS)),
    seed=st.integers(min_value=0, max_value=2**32),
    density=st.floats(min_value=0.0, max_value=1.0),
    currency=st.sampled_from(["EUR", "USD", None]),
    compare=st.booleans(),
)
def test_answers_equal_graphql_core_asked_again_and_after_changes(
    name: str, seed: int, density: float, currency: str | None, compare: bool
) -> None:
    resolved = PLANS[name]
    cells = random_cells(resolved.plan, seed, density)
    report = report_of(resolved, cells, currency)
    if compare:
        other = PLANS[sorted(PLANS)[seed % len(PLANS)]]
        report.comparison = report_of(other, random_cells(other.plan, seed + 1, density))
    first = same(report)
    same(report, BENCH)
    changed = report_of(resolved, _bump(cells, random.Random(seed)), currency)
    second = same(changed)
    if changed.series != report.series:  # a bumped cell of a chosen group changes the answer
        assert second != first


# --- each thing a point's JSON depends on is in its key or its context -----------------------

EVERY = [Metric.EVENTS, Metric.PAYMENTS, Metric.GROSS_SALES, Metric.REFUNDS, Metric.NET_SALES,
         Metric.AVERAGE_TICKET, Metric.PAYMENT_SUCCESS_RATE, Metric.UNIQUE_CUSTOMERS,
         Metric.NEW_CUSTOMERS, Metric.RETURNING_CUSTOMERS, Metric.FAILED_PAYMENTS,
         Metric.REFUND_RATE, Metric.DISPUTES, Metric.DISPUTE_RATE]  # fmt: skip
COUNTERS = ["events", "paid", "gross", "failed", "refunds", "disputes", "new_customers",
            "returning_customers"]  # fmt: skip


def _hours(tz: str = "UTC", now: str = "2030-01-01T00:00:00+00:00") -> ResolvedPlan:
    return make_plan(
        "2024-03-01T00:00:00+00:00", "2024-03-01T03:00:00+00:00", EVERY, Granularity.HOUR,
        tz, now=now,
    )  # fmt: skip


def _cell(**changes: Any) -> Cell:
    base = {"events": 9, "paid": 4, "gross": 12_345, "failed": 1, "refunds": 500,
            "disputes": 1, "new_customers": 2, "returning_customers": 1}  # fmt: skip
    uniques = changes.pop("uniques", Uniques(estimate=7.0, bound=1.0))
    return Cell(**{**base, **changes}, uniques=uniques)


def _one_bucket(resolved: ResolvedPlan, cell: Cell, currency: str | None = "EUR") -> Report:
    return report_of(resolved, {(None, None): cell, ((), None): cell, ((), 1): cell}, currency)


@pytest.mark.parametrize("counter", COUNTERS)
def test_every_counter_is_in_the_key(counter: str) -> None:
    resolved = _hours()
    first = same(_one_bucket(resolved, _cell()))
    second = same(_one_bucket(resolved, _cell(**{counter: 3})))
    assert first != second


@pytest.mark.parametrize(
    "uniques",
    [Uniques(estimate=8.0, bound=1.0), Uniques(estimate=7.0, bound=2.0),
     Uniques(estimate=7.0, bound=1.0, overflow=4.0)],
    ids=["estimate", "bound", "overflow"],
)  # fmt: skip
def test_unique_customers_are_in_the_key(uniques: Uniques) -> None:
    resolved = _hours()
    first = same(_one_bucket(resolved, _cell()))
    assert first != same(_one_bucket(resolved, _cell(uniques=uniques)))


def test_a_sketch_union_is_never_remembered() -> None:
    resolved = _hours()
    answers = set()
    for n in (5, 40):
        uniques = Uniques()
        uniques.add_hashes(list(range(1, n)))
        answers.add(same(_one_bucket(resolved, _cell(uniques=uniques))))
    assert len(answers) == 2


def test_completeness_time_zone_and_currency_are_in_the_key() -> None:
    cell = _cell()
    now_inside = "2024-03-01T01:30:00+00:00"  # bucket 1 (01:00-02:00) not yet elapsed
    answers = [
        same(_one_bucket(_hours(), cell)),
        same(_one_bucket(_hours(now=now_inside), cell)),
        same(_one_bucket(_hours("Europe/Berlin"), cell)),  # the same hours, another offset
        same(_one_bucket(_hours(), cell, "USD")),
        same(_one_bucket(_hours(), cell, None)),
    ]
    assert len(set(answers)) == len(answers)


def test_a_value_graphql_core_refuses_takes_its_path() -> None:
    """NaN cannot be a Float: the remembered path gives up, graphql-core answers the error."""
    resolved = _hours()
    broken = _one_bucket(resolved, _cell(events=math.nan))
    answer = orjson.loads(same(broken))
    assert answer["errors"][0]["extensions"] == {"code": "INTERNAL"}
    assert answer["errors"][0]["path"][:4] == ["metrics", "series", 0, "points"]


def test_http_answers_are_identical() -> None:
    """Through the ASGI app: the router encodes the remembered JSON as the same bytes."""
    resolved = PLANS["grouped_daily_berlin_dst"]
    report = report_of(resolved, random_cells(resolved.plan, 5, 0.7))
    backend = Reports()
    backend.answer = report
    client = opensearch_client(SETTINGS.opensearch_url or "")
    new = TestClient(create_app(SETTINGS, client, backend=backend))
    old = TestClient(create_app(SETTINGS, client, schema=schemas(False), backend=backend))
    body = {"query": QUERY, "variables": VARIABLES}
    headers = {"Authorization": "Bearer test"}
    answers = [c.post("/graphql", json=body, headers=headers) for c in (new, new, old)]
    assert answers[0].content == answers[1].content == answers[2].content
    assert b'"errors"' not in answers[0].content and b'"series":[{"group"' in answers[0].content


# --- the memo's bound ------------------------------------------------------------------------


class Items(Keyed):
    """Items that are their own keys; counts how often one is built."""

    def __init__(self, keys: Sequence[int], built: list[int]) -> None:
        self.keys, self.built = list(keys), built

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: Any) -> Any:
        self.built.append(self.keys[i])
        return {"n": self.keys[i]}

    def context(self) -> Hashable:
        return "ctx"

    def item_keys(self) -> list[int]:
        return self.keys


def _as_is(item: Any) -> Any:
    return item


def _encode(
    memo: Memo, keys: Sequence[int], built: list[int], complete: Callable[[Any], Any] = _as_is
) -> bytes:
    return bytes(orjson.dumps([memo.encode(Items(keys, built), complete)]))


def test_the_memo_is_bounded_and_keeps_what_is_asked_again() -> None:
    memo, built = Memo(limit=10), list[int]()
    assert _encode(memo, [1, 2], built) == b'[[{"n":1},{"n":2}]]'
    for start in range(0, 200, 4):
        _encode(memo, range(start + 100, start + 104), built)
        _encode(memo, [1, 2], built)  # asked all along: stays, built once
        assert memo.held() <= 2 * memo.limit + 4
    assert built.count(1) == built.count(2) == 1
    assert built.count(100) == 1
    assert _encode(memo, [100], built) == b'[[{"n":100}]]'  # dropped long ago: built again
    assert built.count(100) == 2


def test_contexts_count_against_the_bound() -> None:
    """Lists without any key still add a context each: those are bounded too."""
    memo = Memo(limit=10)
    for n in range(100):
        memo.encode(Unkeyed([n]), _selection())
        assert len(memo._new) + len(memo._old) <= 2 * memo.limit + 2


def _selection() -> Callable[[Any], Any]:
    """A new item function, as a new selection shape has."""

    def complete(item: Any) -> Any:
        return item

    return complete


class Unkeyed(Items):
    def item_keys(self) -> list[None]:  # type: ignore[override]
        return [None] * len(self.keys)

    def __init__(self, keys: Sequence[int]) -> None:
        super().__init__(keys, [])


def test_entries_are_relative_to_the_item_function() -> None:
    """Another selection (another generated item function) never reads this one's JSON."""
    memo, built = Memo(), list[int]()
    assert _encode(memo, [1], built) == b'[[{"n":1}]]'
    assert _encode(memo, [1], built, lambda item: {"m": item["n"]}) == b'[[{"m":1}]]'
    assert built == [1, 1]


def test_points_are_their_list() -> None:
    resolved = PLANS["hourly_lord_howe_grouped"]
    report = report_of(resolved, random_cells(resolved.plan, 9, 0.5))
    points = report.series[0].points
    assert isinstance(points, Points)
    listed = list(points)
    assert points == listed and listed == points and repr(points) == repr(listed)
    assert points[-1] == listed[-1] and points[1:4] == listed[1:4]
    with pytest.raises(IndexError):
        points[len(listed)]
    assert len(points.item_keys()) == len(listed) == resolved.plan.buckets


# --- runs: the points of a remembered answer (decision 0315) ---------------------------------


def _other_part(resolved: ResolvedPlan, rng: random.Random, share: float) -> Cells:
    """Another read's cells over some buckets (a raw tail, late hours) and the totals."""
    plan = resolved.plan
    groups = {k[0] for k in random_cells(plan, rng.randint(0, 99), 1.0) if k[0] is not None}
    keys = [(g, i) for g in sorted(groups) for i in range(plan.buckets)]
    picked = rng.sample(keys, int(len(keys) * share))
    totals = [(None, None), *((g, None) for g in sorted(groups) if rng.random() < 0.5)]
    sketches = Metric.UNIQUE_CUSTOMERS in plan.metrics
    return {k: random_cell(rng, sketches) for k in [*totals, *picked]}


def _at(resolved: ResolvedPlan, share: float) -> ResolvedPlan:
    """The same plan asked at another clock: ``share`` of the way through its range."""
    plan = resolved.plan
    now = plan.start_ms + int((plan.end_ms - plan.start_ms) * share)
    return replace(resolved, plan=replace(plan, now_ms=now))


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(sorted(PLANS)),
    seed=st.integers(min_value=0, max_value=2**32),
    density=st.floats(min_value=0.0, max_value=1.0),
    share=st.floats(min_value=0.0, max_value=0.3),
    clocks=st.lists(st.floats(min_value=-0.1, max_value=1.1), min_size=1, max_size=3),
    currency=st.sampled_from(["EUR", None]),
)
def test_runs_of_a_remembered_answer_answer_as_its_points(
    name: str, seed: int, density: float, share: float, clocks: list[float], currency: str | None
) -> None:
    """One remembered answer (one token) asked at several clocks and beside other parts
    answers what graphql-core answers for the same cells: its completeness and the buckets
    another part also has are in the runs' keys."""
    resolved, rng = PLANS[name], random.Random(seed)
    held = random_cells(resolved.plan, seed, density)
    token = next(TOKENS)
    for clock in [None, *clocks]:
        at = resolved if clock is None else _at(resolved, clock)
        other = _other_part(resolved, rng, share)
        fixed = Fixed(token, frozenset(other))
        report = report_of(at, added_up([held, other]), currency, fixed=fixed)
        same(report)
        same(report, BENCH)


def test_a_remembered_answers_points_are_runs() -> None:
    """Between the buckets another part has, the points are runs (one key each), and the
    runs cover every point once, in order."""
    resolved = PLANS["30d_hourly_ungrouped"]
    held = random_cells(resolved.plan, 3, 0.8)
    other = {((), 5): Cell(events=1), ((), 700): Cell(events=2), (None, None): Cell(events=3)}
    fixed = Fixed(next(TOKENS), frozenset(other))
    report = report_of(resolved, added_up([held, other]), fixed=fixed)
    keys = report.series[0].points.item_keys()
    assert [(k.start, k.stop) if isinstance(k, Run) else "one" for k in keys] == [
        (0, 5),
        "one",
        (6, 700),
        "one",
        (701, 720),
    ]
    assert [k for k in keys if not isinstance(k, Run)] == [
        *report.series[0].points.keys_within(5, 6),
        *report.series[0].points.keys_within(700, 701),
    ]
    plain = report_of(resolved, added_up([held, other]))  # no answer named: a key per point
    assert not any(isinstance(k, Run) for k in plain.series[0].points.item_keys())


class Runs(Items):
    """Items as runs of ``width`` (keyed by their items), each item its own key within."""

    def __init__(self, keys: Sequence[int], built: list[int], width: int) -> None:
        super().__init__(keys, built)
        self.width = width

    def item_keys(self) -> list[Run]:  # type: ignore[override]
        n = len(self.keys)
        return [
            Run(tuple(self.keys[i : i + self.width]), i, min(i + self.width, n))
            for i in range(0, n, self.width)
        ]

    def keys_within(self, start: int, stop: int) -> list[int]:
        return self.keys[start:stop]


def test_a_run_is_one_entry_built_through_its_items() -> None:
    memo, built = Memo(), list[int]()
    items = list(range(10))
    want = orjson.dumps([{"n": n} for n in items])
    assert bytes(orjson.dumps(memo.encode(Runs(items, built, 4), _as_is))) == want
    assert built == items
    assert bytes(orjson.dumps(memo.encode(Runs(items, built, 4), _as_is))) == want
    assert built == items  # the runs were remembered
    # Other runs over the same items: completed through the items' own keys, none built.
    assert bytes(orjson.dumps(memo.encode(Runs(items, built, 3), _as_is))) == want
    assert built == items
    assert memo.hits == 20 and memo.misses == 10


def test_a_run_counts_against_the_bound_as_its_items() -> None:
    memo, built = Memo(limit=50), list[int]()
    memo.encode(Runs(list(range(40)), built, 40), _as_is)  # 40 items + the run's 40
    assert memo._old and not memo._new  # the newer generation filled up and was moved on
