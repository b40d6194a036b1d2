"""api.resolve's remembered judgement (``judge``) and its late-search pre-check
(``_any_unsettled``) answer exactly what the unremembered rules answer: the rollup state's
candidate hours split by the planner, for any range, bucket size, zone, clock, W and holds."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from api import planner, resolve
from api.model import HOUR_MS, Granularity, Metric, Split
from pulse.clock import DAY_MS
from pulse.settings import Settings
from rollups import state
from storage import rollup_schema as rs

SETTINGS = Settings(opensearch_url="http://127.0.0.1:9")
GENERATION = SETTINGS.generation
BASE = 1_704_067_200_000  # 2024-01-01T00:00Z

# Days, hours and milliseconds drawn apart: instants off the hour and off the day are common.
offsets = st.builds(
    lambda d, h, ms: d * DAY_MS + h * HOUR_MS + ms,
    st.integers(min_value=-3, max_value=12),
    st.integers(min_value=0, max_value=23),
    st.integers(min_value=0, max_value=HOUR_MS - 1),
)
holds = st.lists(
    st.tuples(offsets, st.integers(min_value=1, max_value=2 * DAY_MS)), max_size=2
).map(lambda found: tuple(state.Hold(f"h{i}", BASE + a, BASE + a + n) for i, (a, n) in
                          enumerate(found)))  # fmt: skip


@st.composite
def views(draw: st.DrawFn) -> state.View:
    if draw(st.integers(min_value=0, max_value=9)) == 0:  # a state this code does not serve
        watermark = draw(st.none() | offsets.map(lambda o: BASE + o))
        generation = draw(st.sampled_from([GENERATION, "g-other"]))
        schema = draw(st.sampled_from([rs.SCHEMA_VERSION, rs.SCHEMA_VERSION - 1]))
        found = draw(st.none() | st.just(state.State(generation, watermark, (1, 1), schema)))
    else:
        watermark = BASE + draw(offsets)
        found = state.State(GENERATION, watermark, (1, 1), rs.SCHEMA_VERSION)
    return state.View(found, draw(holds))


@st.composite
def plans(draw: st.DrawFn) -> planner.QueryPlan:
    start = BASE + draw(offsets)
    length = draw(st.integers(min_value=1, max_value=9 * DAY_MS))
    plan = planner.build_plan(
        "m1",
        datetime.fromtimestamp(start / 1000, UTC),
        datetime.fromtimestamp((start + length) / 1000, UTC),
        [Metric.EVENTS],
        granularity=draw(st.sampled_from([Granularity.HOUR, Granularity.DAY])),
        timezone=draw(st.sampled_from(["UTC", "Asia/Kolkata", "America/New_York"])),
        now_ms=BASE + draw(offsets),
    )
    return planner.time_buckets(plan, SETTINGS)


def _unremembered(
    seen: state.View, plan: planner.QueryPlan
) -> tuple[Split, frozenset[int], int | None]:
    found = state.candidate_hours(seen, GENERATION, plan.start_ms, plan.end_ms, plan.now_ms)
    split = planner.split_sources(plan, found.hours, found.watermark).split
    return split, found.held, found.watermark


@settings(max_examples=300, deadline=None)
@given(views(), plans(), st.integers(min_value=0, max_value=HOUR_MS - 1))
def test_the_remembered_judgement_is_the_rules_judgement(
    seen: state.View, plan: planner.QueryPlan, later: int
) -> None:
    assert resolve.judge(seen, GENERATION, plan) == _unremembered(seen, plan)
    # Another request of the same clock hour: remembered, and still the rules' answer.
    again = planner.QueryPlan(**{**plan.__dict__, "now_ms": plan.now_ms + later})
    assert resolve.judge(seen, GENERATION, again) == _unremembered(seen, again)


@st.composite
def hour_runs(draw: st.DrawFn) -> list[int]:
    """Whole hours in up to three runs, often ending at a midnight (the next day untouched)."""
    hours: set[int] = set()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        day, hour = draw(st.integers(min_value=0, max_value=12)), draw(st.integers(0, 23))
        to_midnight = 24 - hour
        n = draw(st.sampled_from([to_midnight, to_midnight + 24]) | st.integers(1, 60))
        first = BASE + day * DAY_MS + hour * HOUR_MS
        hours |= {first + k * HOUR_MS for k in range(n)}
    return sorted(hours)


@settings(max_examples=300, deadline=None)
@given(hour_runs(), st.lists(st.sampled_from(["settled"] * 8 + ["after", "unknown"]),
                             min_size=16, max_size=16), offsets)  # fmt: skip
def test_the_late_search_pre_check_agrees_with_unsettled(
    hours: list[int], kinds: list[str], w: int
) -> None:
    watermark = BASE + w
    rollups = planner.merge_runs((h, h + HOUR_MS) for h in hours)
    first_day = BASE // DAY_MS
    bound = {"settled": watermark - 1, "after": watermark + 1}
    known = {first_day + i: bound[k] for i, k in enumerate(kinds) if k in bound}
    split = Split(raw=(), rollups=rollups, watermark_ms=watermark)
    expected = bool(state.unsettled(resolve.hours_of(rollups), known, watermark))
    assert resolve._any_unsettled(split, known, watermark) is expected
