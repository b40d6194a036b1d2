"""Unit tests of each stage: plan validation, time buckets, processors, the DSL formatter,
cell merging, error classification and the rate limiter (no engine needed)."""

from __future__ import annotations

import dataclasses
import itertools
from bisect import bisect_left, bisect_right
from datetime import UTC, datetime

import pytest
from graphql import GraphQLError
from hypothesis import given, settings
from hypothesis import strategies as st

from api import dsl, planner
from api.cells import Cell, Uniques
from api.errors import BadInput, Code, EngineTimeout, Forbidden, RateLimited
from api.keys import Principal
from api.masking import classify
from api.model import (
    HOUR_MS,
    MISSING,
    Dimension,
    Filter,
    Granularity,
    Metric,
    QueryPlan,
    Source,
)
from api.ratelimit import RateLimiter
from api.timebuckets import boundaries, zone
from pulse.settings import Settings
from storage import rollup_schema as rs

SETTINGS = Settings(max_buckets=100)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def plan(start: str, end: str, gran: Granularity = Granularity.HOUR, tz: str = "UTC", **kw: object):  # type: ignore[no-untyped-def]
    return planner.build_plan(
        "m1",
        datetime.fromisoformat(start),
        datetime.fromisoformat(end),
        [Metric.EVENTS],
        granularity=gran,
        timezone=tz,
        now_ms=ms("2030-01-01T00:00:00+00:00"),
        **kw,  # type: ignore[arg-type]
    )


def test_new_york_spring_forward_day_has_23_hours() -> None:
    b = boundaries(ms("2024-03-10T05:00:00+00:00"), ms("2024-03-12T04:00:00+00:00"),
                   Granularity.DAY, zone("America/New_York"), 100)  # fmt: skip
    assert [y - x for x, y in itertools.pairwise(b)] == [23 * HOUR_MS, 24 * HOUR_MS]


def test_new_york_fall_back_has_two_one_oclock_hours() -> None:
    b = boundaries(ms("2024-11-03T04:00:00+00:00"), ms("2024-11-03T08:00:00+00:00"),
                   Granularity.HOUR, zone("America/New_York"), 100)  # fmt: skip
    assert len(b) == 5 and all(y - x == HOUR_MS for x, y in itertools.pairwise(b))


HALF_HOUR_ZONES = [
    ("Asia/Kolkata", "2024-03-09T18:30:00+00:00"),
    ("Asia/Kathmandu", "2024-03-09T18:15:00+00:00"),
]


@pytest.mark.parametrize(("tz", "first"), HALF_HOUR_ZONES)
def test_half_hour_zones_start_days_off_the_hour(tz: str, first: str) -> None:
    b = boundaries(ms("2024-03-10T00:00:00+00:00"), ms("2024-03-11T00:00:00+00:00"),
                   Granularity.DAY, zone(tz), 100)  # fmt: skip
    assert b[0] == ms(first) and b[1] - b[0] == 24 * HOUR_MS


def test_weeks_start_monday_and_months_on_the_first() -> None:
    tz = zone("Europe/Berlin")
    w = boundaries(ms("2024-03-13T12:00:00+00:00"), ms("2024-03-14T00:00:00+00:00"),
                   Granularity.WEEK, tz, 10)  # fmt: skip
    assert datetime.fromtimestamp(w[0] / 1000, tz).isoformat() == "2024-03-11T00:00:00+01:00"
    m = boundaries(ms("2024-03-13T12:00:00+00:00"), ms("2024-04-02T00:00:00+00:00"),
                   Granularity.MONTH, tz, 10)  # fmt: skip
    assert datetime.fromtimestamp(m[1] / 1000, tz).isoformat() == "2024-04-01T00:00:00+02:00"


def test_bad_input_is_refused_with_clear_messages() -> None:
    with pytest.raises(BadInput, match="time zone"):
        plan("2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00", tz="Mars/Olympus")
    with pytest.raises(BadInput, match="after"):
        plan("2024-01-02T00:00:00+00:00", "2024-01-02T00:00:00+00:00")
    p = plan("2024-01-01T00:00:00+00:00", "2024-03-01T00:00:00+00:00", Granularity.HOUR)
    with pytest.raises(BadInput, match="too many buckets"):
        planner.time_buckets(p, SETTINGS)


def test_tenant_scope_comes_from_the_key() -> None:
    p = plan("2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00")
    assert planner.tenant_scope(p, Principal("k", None, admin=True)) is p
    with pytest.raises(Forbidden):
        planner.tenant_scope(p, Principal("k", "m2", admin=False))
    body = dsl.series_body(planner.time_buckets(p, SETTINGS), Source.RAW, ((0, 1),), None)
    assert {"term": {"merchant_id": "m1"}} in body["query"]["bool"]["filter"]


def test_split_serves_whole_hours_from_rollups_without_overlap() -> None:
    p = plan("2024-03-10T00:10:00+05:30", "2024-03-12T00:00:00+05:30", Granularity.DAY,
             "Asia/Kolkata")  # fmt: skip
    p = planner.time_buckets(p, SETTINGS)
    hours = set(range(p.start_ms // HOUR_MS * HOUR_MS, p.end_ms, HOUR_MS))
    hours.discard(ms("2024-03-10T12:00:00+00:00"))  # say this hour changed since its rollup
    split = planner.split_sources(p, hours, None).split
    assert split is not None
    pieces = sorted([*split.raw, *split.rollups])
    assert pieces[0][0] == p.start_ms and pieces[-1][1] == p.end_ms
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))  # no gap/overlap
    boundary_hour = ms("2024-03-10T18:00:00+00:00")  # contains the 18:30 UTC day boundary
    assert any(a <= boundary_hour < b for a, b in split.raw)
    assert any(a <= ms("2024-03-10T12:00:00+00:00") < b for a, b in split.raw)
    assert all(a % HOUR_MS == 0 and b % HOUR_MS == 0 for a, b in split.rollups)
    forced = planner.split_sources(
        planner.time_buckets(plan("2024-03-10T00:00:00+00:00", "2024-03-11T00:00:00+00:00",
                                  force_source=Source.RAW), SETTINGS), hours, None)  # fmt: skip
    assert forced.split is not None and not forced.split.rollups


def reference_split(p: QueryPlan, servable: set[int]) -> tuple[tuple[int, int], ...]:
    """The rollup intervals by the rule's plain statement (the planner's code before session
    8): each whole hour of the range, in order, that is servable and that no bucket boundary
    falls strictly inside, merged into runs."""
    first = -(-p.start_ms // HOUR_MS) * HOUR_MS
    runs: list[tuple[int, int]] = []
    for h in range(first, p.end_ms - HOUR_MS + 1, HOUR_MS):
        inside = bisect_right(p.boundaries, h) == bisect_left(p.boundaries, h + HOUR_MS)
        if h in servable and inside:
            if runs and runs[-1][1] == h:
                runs[-1] = (runs[-1][0], h + HOUR_MS)
            else:
                runs.append((h, h + HOUR_MS))
    return tuple(runs)


@settings(max_examples=150, deadline=None)
@given(
    start_h=st.integers(0, 24 * 40),
    start_m=st.sampled_from([0, 10, 30, 45]),
    length_h=st.integers(1, 24 * 20),
    gran=st.sampled_from([Granularity.MINUTE, Granularity.HOUR, Granularity.DAY,
                          Granularity.WEEK, Granularity.MONTH, Granularity.ALL]),
    tz=st.sampled_from(["UTC", "Asia/Kolkata", "America/New_York", "Asia/Kathmandu"]),
    holes=st.sets(st.integers(-5, 24 * 21), max_size=40),
    offgrid=st.integers(-1, 24 * 21),
    clip=st.sampled_from(["none", "both", "end", "start"]),
)  # fmt: skip
def test_the_split_is_the_rule_hour_by_hour(
    start_h: int,
    start_m: int,
    length_h: int,
    gran: Granularity,
    tz: str,
    holes: set[int],
    offgrid: int,
    clip: str,
) -> None:
    """The split's rollup hours (servable, whole, inside one bucket), on any range, zone and
    granularity, and with servable hours missing here and there; also when the servable
    hours end (or start) inside the range, as source resolution gives them."""
    begin = ms("2024-02-20T00:00:00+00:00") + start_h * HOUR_MS + start_m * 60_000
    start = datetime.fromtimestamp(begin / 1000, UTC)
    end = datetime.fromtimestamp((begin + length_h * HOUR_MS) / 1000, UTC)
    p = planner.build_plan("m1", start, end, [Metric.EVENTS], granularity=gran, timezone=tz,
                           now_ms=ms("2030-01-01T00:00:00+00:00"))  # fmt: skip
    p = planner.time_buckets(p, Settings(max_buckets=100_000))
    base = begin // HOUR_MS * HOUR_MS
    servable = {base + i * HOUR_MS for i in range(-3, length_h + 3)} - {
        base + i * HOUR_MS for i in holes
    }
    if clip in ("both", "start"):
        servable = {h for h in servable if p.start_ms <= h}
    if clip in ("both", "end"):
        servable = {h for h in servable if h + HOUR_MS <= p.end_ms}
    if offgrid >= 0:  # not an hour start: never a rollup hour
        servable.add(base + offgrid * HOUR_MS + 60_000)
    split = planner.split_sources(p, servable, None).split
    assert split.rollups == reference_split(p, servable)
    assert split.raw == planner.complement(p.start_ms, p.end_ms, split.rollups)


@pytest.mark.parametrize("before", [0, 2])
@pytest.mark.parametrize("after", [0, 2])
@pytest.mark.parametrize("swap", [None, 5, 0])
@pytest.mark.parametrize("tz", ["UTC", "Asia/Kathmandu"])
def test_the_split_of_consecutive_hours_is_the_rule(
    before: int, after: int, swap: int | None, tz: str
) -> None:
    """Consecutive servable hours (what source resolution usually gives: one run, taken
    without sorting), reaching past the range or not, with one hour swapped for an instant
    off the hour (same count, same span), in a zone with boundaries off the hour."""
    p = planner.time_buckets(
        plan("2024-02-20T00:00:00+00:00", "2024-02-21T00:00:00+00:00", tz=tz), SETTINGS
    )
    servable = {p.start_ms + i * HOUR_MS for i in range(-before, 24 + after)}
    if swap is not None:
        servable = (servable - {p.start_ms + swap * HOUR_MS}) | {p.start_ms + 3 * HOUR_MS + 1}
    split = planner.split_sources(p, servable, None).split
    assert split.rollups == reference_split(p, servable)


def test_missing_dimension_filters_differ_per_source() -> None:
    flt = Filter(Dimension.STATUS, ("failed", MISSING), exclude=True)
    raw = dsl.filter_clause(Source.RAW, flt)
    assert raw["bool"]["must_not"][0]["bool"]["should"][1] == {
        "bool": {"must_not": [{"exists": {"field": "status"}}]}
    }
    rolled = dsl.filter_clause(Source.ROLLUPS, flt)
    assert rolled["bool"]["must_not"][0]["bool"]["should"] == [
        {"terms": {"status": ["failed", MISSING]}}
    ]


def test_cells_add_exactly_and_uniques_union() -> None:
    a, b = Cell(events=2, gross=1005), Cell(events=3, gross=2)
    a.uniques.add_hashes([1, 2, 3])
    b.uniques.add_hashes([3, 4])
    a.merge(b)
    assert (a.events, a.gross) == (5, 1007)
    value, bound = a.uniques.value()
    assert value == 4 and bound >= 0
    assert Uniques(7.0, 1.0).value() == (7, 1.0)


def test_errors_are_classified_and_system_text_is_masked() -> None:
    client = classify(GraphQLError("x", path=["metrics"], original_error=Forbidden("no")))
    assert client.message == "no" and client.extensions == {"code": Code.FORBIDDEN.value}
    system = classify(GraphQLError("x", path=["metrics"], original_error=EngineTimeout("secret")))
    assert "secret" not in system.message and system.extensions == {"code": "INTERNAL"}
    bug = classify(GraphQLError("x", path=["m"], original_error=KeyError("engine trace")))
    assert bug.message == "internal error"
    syntax = classify(GraphQLError("Syntax Error: bad"))
    assert syntax.extensions == {"code": "BAD_USER_INPUT"}


def test_token_bucket_limits_and_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    limiter.take("k")
    limiter.take("k")
    with pytest.raises(RateLimited):
        limiter.take("k")
    limiter.take("other")  # per key
    now[0] += 30.0  # half a minute refills one token
    limiter.take("k")


def test_naive_datetimes_are_wall_time_in_the_request_zone() -> None:
    p = plan("2024-03-10T00:00:00", "2024-03-11T00:00:00", Granularity.DAY, "Asia/Kathmandu")
    assert p.start_ms == ms("2024-03-10T00:00:00+05:45")
    assert datetime.fromtimestamp(p.start_ms / 1000, UTC).minute == 15


def test_rollups_answer_from_one_level_of_documents() -> None:
    """Unfiltered, ungrouped reports read the merchant-hour totals; anything that needs a
    dimension reads the details; never both (each event would count twice)."""
    window = ("2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00")
    country = Filter(Dimension.COUNTRY, ("US",))
    cases = [
        (plan(*window), rs.totals_of("m1")),
        (plan(*window, filters=[country]), rs.DETAILS_ONLY),
        (plan(*window, group_by=[Dimension.CHANNEL]), rs.DETAILS_ONLY),
    ]
    for p, level in cases:
        rollups = dsl.query(p, Source.ROLLUPS, ((0, HOUR_MS),))["bool"]["filter"]
        assert level in rollups
        assert (rs.totals_of("m1") in rollups) != (rs.DETAILS_ONLY in rollups)
        raw = dsl.query(p, Source.RAW, ((0, HOUR_MS),))["bool"]["filter"]
        assert rs.totals_of("m1") not in raw and rs.DETAILS_ONLY not in raw


def test_totals_are_fetched_as_one_day_pack_per_day_by_id() -> None:
    """The day packs of the hours the split gives rollups: one per UTC day, by the writer's
    own ids, in the day's monthly index; another merchant's ids never coincide."""
    p = planner.time_buckets(
        plan("2024-01-31T22:00:00+00:00", "2024-02-01T03:00:00+00:00", Granularity.HOUR), SETTINGS
    )
    hours = [p.start_ms, p.start_ms + HOUR_MS, p.start_ms + 3 * HOUR_MS]
    docs = dsl.packs_docs(p, hours, lambda day: f"rollups-{rs.month_of(day)}")
    jan31, feb1 = rs.day_start(hours[0]), rs.day_start(hours[2])
    assert docs == [
        {"_index": "rollups-2024-01-01", "_id": rs.pack_id(p.merchant_id, jan31)},
        {"_index": "rollups-2024-02-01", "_id": rs.pack_id(p.merchant_id, feb1)},
    ]
    other = dsl.packs_docs(dataclasses.replace(p, merchant_id="m2"), hours, str)
    assert not {d["_id"] for d in docs} & {d["_id"] for d in other}
    assert rs.pack_id(p.merchant_id, jan31) != rs.doc_id(p.merchant_id, jan31, rs.TOTAL)


@given(st.integers(0, 47_000), st.integers(0, 70), st.lists(st.integers(0, 47_000), max_size=5))
def test_pack_entries_name_each_days_monthly_index_and_id(
    first: int, length: int, more: list[int]
) -> None:
    """Formatting asks for a monthly index once per month (and remembers ids): the same
    entries as asking for every day's, over runs of days (1970 to ~2098) and stray days."""
    p = plan("2024-01-31T22:00:00+00:00", "2024-02-01T03:00:00+00:00")
    starts = [d * rs.DAY_MS for d in [*range(first, first + length), *more]]

    def index_of(day: int) -> str:
        return f"rollups-{rs.month_of(day)}"

    assert dsl._pack_entries(p, starts, index_of) == [
        {"_index": index_of(day), "_id": rs.pack_id(p.merchant_id, day)} for day in starts
    ]
