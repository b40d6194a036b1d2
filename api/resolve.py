"""Source resolution: a processed QueryPlan -> a ResolvedPlan (which source answers what).

The API's one owner of the rollup state (rollups.state, the named seam): the state and holds
it plans with, the rules it judges hours by (``candidate_hours``, ``unsettled``,
``rolled_up_through``) and the late-event re-split. Its reads are formatted by api.dsl and run
by the execution stage (api.sources); nothing here writes DSL or touches the engine.

Late events are rare and touch recent hours, so resolution is speculative: ``resolve`` splits
on the candidate hours (closed at W, not held; one ``mget``, which also reads the arrival
bounds of the range's days) and, for rollup hours on days not settled at W, starts the search
for hours changed by events ingested after W, which runs alongside the report's reads.
``settle`` waits for it and, only when it found some, splits again without them: the same
planner rule (``planner.split_sources``) on fewer servable hours, never a second planning of
the request.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, replace
from functools import lru_cache

from api import dsl, planner, sources
from api.model import HOUR_MS, Interval, QueryPlan, ResolvedPlan, Source, Split
from api.sources import Ctx
from pulse.clock import DAY_MS
from rollups import state  # the named seam: which hours the rollups serve (.importlinter)


def _nothing_late() -> Future[set[int]]:
    done: Future[set[int]] = Future()
    done.set_result(set())
    return done


@dataclass(frozen=True)
class Resolution:
    """A speculative resolved plan and the pending search for late events in its rollup
    hours (already done, with nothing found, when there is nothing to search)."""

    speculative: ResolvedPlan
    late: Future[set[int]]

    def settle(self) -> ResolvedPlan:
        """The plan to answer with: the speculative one when no rollup hour it uses changed
        after W, else the re-split without the changed hours (which raw then answers)."""
        late = self.late.result()
        if not late:
            return self.speculative
        resolved = self.speculative
        servable = hours_of(resolved.split.rollups) - late
        again = planner.split_sources(resolved.plan, servable, resolved.split.watermark_ms)
        return replace(again, held=resolved.held, late=frozenset(late), versions=resolved.versions)


def resolve(ctx: Ctx, plan: QueryPlan) -> Resolution:
    """Split the plan by the hours the rollup state serves, and start the late-event search
    over the hours given to rollups (``forceSource: RAW`` reads no state at all).

    The state, the holds and the arrival bounds of the range's days are one read; only the
    days whose bound is above W, or unknown, are searched (decision 0048), and nothing runs
    in the background when there are none (decision 0256). The same read brings the
    versions of the range's day packs and of the exchange rates the plan may use, which key
    what the API remembers of them (``ResolvedPlan.versions``, decision 0260)."""
    if plan.force_source is Source.RAW:
        return Resolution(planner.split_sources(plan, set(), None), _nothing_late())
    days = range(plan.start_ms // DAY_MS, (plan.end_ms - 1) // DAY_MS + 1)
    docs = dsl.version_docs(plan, sources.rollup_index(ctx), ctx.names.fx_index)
    seen, known, versions = sources.read_state_bounds_and_versions(ctx, days, docs)
    split, held, watermark = judge(seen, ctx.settings.generation, plan)
    resolved = ResolvedPlan(plan, split, held=held, versions=versions)
    if not split.rollups or watermark is None or not _any_unsettled(split, known, watermark):
        return Resolution(resolved, _nothing_late())
    todo = state.unsettled(hours_of(split.rollups), known, watermark)
    request = dsl.late_hours_request(plan.merchant_id, todo, watermark)
    return Resolution(resolved, sources.in_background(late_hours, ctx, request, todo))


def judge(
    seen: state.View, generation: str, plan: QueryPlan
) -> tuple[Split, frozenset[int], int | None]:
    """``planner.split_sources(plan, state.candidate_hours(seen, …).hours, W).split``, the
    held hours and W, for a plan not forced to raw. Whole hours only: an hour is closed at
    ``now`` exactly when it is closed at the start of now's hour, so the judgement is
    remembered per hour of the clock (``_judged``)."""
    now_hour = plan.now_ms - plan.now_ms % HOUR_MS
    return _judged(seen, generation, plan.start_ms, plan.end_ms, now_hour, plan.boundaries)


@lru_cache(maxsize=1024)
def _judged(
    seen: state.View,
    generation: str,
    start_ms: int,
    end_ms: int,
    now_ms: int,
    boundaries: tuple[int, ...],
) -> tuple[Split, frozenset[int], int | None]:
    """The split of a plan's range by the hours the rollup state ``seen`` serves, with the
    hours a hold kept out and W: a pure function of its arguments, remembered, since a
    dashboard asks the same range again and again between rollup runs (~0.3 ms of a 30-day
    hourly report: sets of 720 hours)."""
    found = state.candidate_hours(seen, generation, start_ms, end_ms, now_ms)
    split = planner.split_range(start_ms, end_ms, boundaries, found.hours, found.watermark)
    return split, found.held, found.watermark


def _any_unsettled(split: Split, known: dict[int, int], watermark: int) -> bool:
    """Whether a day of the rollup hours may hold an event ingested after W: the question
    ``state.unsettled`` answers hour by hour, asked of the days (it is empty exactly when
    none of them changed)."""
    days = set().union(*(range(a // DAY_MS, (b - 1) // DAY_MS + 1) for a, b in split.rollups))
    return bool(state.changed_days(days, known, watermark))


def hours_of(intervals: tuple[Interval, ...]) -> set[int]:
    return set().union(*(range(a, b, HOUR_MS) for a, b in intervals))  # filled in C


def late_hours(ctx: Ctx, request: dsl.RawSearch, todo: set[int]) -> set[int]:
    """Those of ``todo`` (rollup hours of unsettled days) holding a raw event of the merchant
    ingested after W: the late-event search ``request`` asks for them."""
    return sources.late_hours(ctx, request) & todo


def watermark(ctx: Ctx) -> int | None:
    """The rollup watermark W (None before the first run of this code's schema)."""
    return sources.read_state(ctx).watermark()


def freshness(ctx: Ctx, merchant_id: str) -> tuple[int | None, int | None]:
    """(ingested through, rolled up through) for a merchant, epoch ms or None."""
    seen = sources.read_state(ctx)
    request = dsl.freshness_request(merchant_id, seen.watermark())
    newest, first_late = sources.freshness(ctx, request)
    return newest, state.rolled_up_through(seen, first_late)
