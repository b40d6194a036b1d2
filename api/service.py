"""One report end to end: processors -> split -> execution per source -> merge -> shape."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from api import customers, money, planner
from api.cells import Cell
from api.engine import engine_errors
from api.fx import Converter
from api.keys import Principal
from api.model import HOUR_MS, Base, Interval, QueryPlan, Source
from api.report import FIRST_PURCHASES, Report, rank, shape
from api.sources import (
    Cells,
    Ctx,
    GroupKey,
    group_totals,
    merge_into,
    series_cells,
    sketch_cells,
    total_doc_cells,
)
from rollups import state  # the named seam: which hours the rollups serve (.importlinter)

_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="pulse-query")


def _state_call(fn: Any, *args: Any) -> Any:
    """A read of the rollup state, its failures mapped like every engine call's."""
    with engine_errors("rollup state read"):
        return fn(*args)


def process(ctx: Ctx, plan: QueryPlan, principal: Principal) -> QueryPlan:
    """The processor chain, in order: tenant scope, cost limits, time buckets."""
    plan = planner.tenant_scope(plan, principal)
    plan = planner.cost_limits(plan, ctx.settings)
    customers.check_dimensions(plan)
    return planner.time_buckets(plan, ctx.settings)


def split(ctx: Ctx, plan: QueryPlan) -> tuple[QueryPlan, Future[set[int]] | None]:
    """Plan the sources from the rollup state's candidate hours (one ``mget``), and start the
    search for late events in the hours given to rollups; it runs alongside the reads."""
    if plan.force_source is Source.RAW:
        return planner.split_sources(plan, set(), None), None
    found = _state_call(
        state.candidates,
        ctx.client, ctx.settings, ctx.names, plan.start_ms, plan.end_ms, plan.now_ms,
    )  # fmt: skip
    planned = planner.split_sources(plan, found.hours, found.watermark)
    used = _hours_of(planned.split.rollups if planned.split else ())
    if not used or found.watermark is None:
        return planned, None
    args = (ctx.client, ctx.names, plan.merchant_id, used, found.watermark)
    dirty = _POOL.submit(_state_call, state.dirty_hours, *args)
    return planned, dirty


def _hours_of(intervals: tuple[Interval, ...]) -> set[int]:
    return {h for a, b in intervals for h in range(a, b, HOUR_MS)}


def answer(ctx: Ctx, plan: QueryPlan) -> tuple[QueryPlan, Cells, tuple[GroupKey, ...] | None]:
    """The split plan and its cells. Reads are speculative on the candidate hours being clean
    (late events after W are rare and touch recent hours): if the search started by ``split``
    finds some dirty, the plan is split again without them and read again."""
    planned, dirty = split(ctx, plan)
    converter = Converter(ctx, plan) if plan.converts else None
    cells, groups = gather(ctx, planned, converter)
    late = dirty.result() if dirty is not None else set()
    if late:
        assert planned.split is not None
        servable = _hours_of(planned.split.rollups) - late
        planned = planner.split_sources(plan, servable, planned.split.watermark_ms)
        cells, groups = gather(ctx, planned, converter)
    return planned, cells, groups


def gather(
    ctx: Ctx, plan: QueryPlan, converter: Converter | None = None
) -> tuple[Cells, tuple[GroupKey, ...] | None]:
    """Cells from both sources merged (no instant is read twice), and the chosen groups.
    With a ``converter`` (reportingCurrency), money is converted before groups are ranked."""
    assert plan.split is not None
    parts = [(Source.RAW, plan.split.raw), (Source.ROLLUPS, plan.split.rollups)]
    parts = [(s, iv) for s, iv in parts if iv]
    stitched = Base.CUSTOMERS in plan.bases and bool(plan.split.rollups)
    cap = ctx.settings.stitch_customer_cap if stitched else 0
    sketches = sketch_cells(ctx, plan, plan.split.rollups) if stitched else {}
    # NEW/RETURNING_CUSTOMERS come whole from their own read (raw + first purchases).
    firsts = customers.customer_cells(ctx, plan) if Base.FIRSTS in plan.bases else {}
    groups: tuple[GroupKey, ...] | None = None
    if plan.group_by:
        totals: Cells = {}
        for source, intervals in parts:
            merge_into(totals, group_totals(ctx, plan, source, intervals, cap))
        merge_into(totals, {k: c for k, c in sketches.items() if k[0] is not None and k[1] is None})
        merge_into(totals, {k: c for k, c in firsts.items() if k[0] is not None and k[1] is None})
        if converter is not None:
            converter.convert(totals)
        groups = rank(totals, plan.metrics[0], plan.limit)
    cells: Cells = {}
    # Both sources are asked at once: the rollup part and the raw tail overlap in time.
    futures = [
        _POOL.submit(_cells, ctx, plan, source, intervals, groups, cap)
        for source, intervals in parts
    ]
    for future in futures:
        merge_into(cells, future.result())
    chosen = set(groups) if groups is not None else {()}
    merge_into(cells, {k: c for k, c in sketches.items() if k[0] is None or k[0] in chosen})
    merge_into(cells, {k: c for k, c in firsts.items() if k[0] is None or k[0] in chosen})
    if converter is not None:
        converter.convert(cells)
    return cells, groups


def _cells(
    ctx: Ctx,
    plan: QueryPlan,
    source: Source,
    intervals: tuple[Interval, ...],
    groups: tuple[GroupKey, ...] | None,
    cap: int,
) -> Cells:
    """One source's cells; rollups without filter or grouping come from the total documents."""
    if source is Source.ROLLUPS and not plan.filters and not plan.group_by:
        return total_doc_cells(ctx, plan, intervals)
    return series_cells(ctx, plan, source, intervals, groups, cap)


def report(ctx: Ctx, plan: QueryPlan) -> Report:
    """Run a processed plan (and its comparison) and shape the answer."""
    started = time.perf_counter()
    plan, cells, groups = answer(ctx, plan)
    took = int((time.perf_counter() - started) * 1000)
    currencies = money.resolve(plan, cells.get((None, None), Cell()))
    out = shape(plan, cells, groups, took, currencies)
    if plan.compare is not None:
        out.comparison = report(ctx, plan.compare)
    return out


@dataclass(frozen=True)
class CohortAnswer:
    rows: list[customers.CohortRow]
    sources: list[str]
    watermark_ms: int | None
    took_ms: int


def cohort_report(ctx: Ctx, plan: customers.CohortPlan) -> CohortAnswer:
    """The cohort matrix of a validated plan, with the rollup watermark its state lags by."""
    started = time.perf_counter()
    watermark = _state_call(state.watermark, ctx.client, ctx.names)
    rows = customers.cohorts(ctx, plan)
    took = int((time.perf_counter() - started) * 1000)
    return CohortAnswer(rows, [Source.RAW.value, FIRST_PURCHASES], watermark, took)


def freshness(ctx: Ctx, merchant_id: str) -> tuple[int | None, int | None]:
    """(ingested through, rolled up through) for a merchant, epoch ms or None."""
    result: tuple[int | None, int | None] = _state_call(
        state.freshness, ctx.client, ctx.names, merchant_id
    )
    return result
