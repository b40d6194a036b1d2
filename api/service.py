"""One report end to end, as a straight line of stages (docs/decisions/0230):

plan (api.planner, pure) -> source resolution (api.resolve: ResolvedPlan) -> request
formatting (api.dsl: the only writer of DSL) -> execution (api.sources through api.engine:
Results) -> ranking (api.rank, between the groups' totals and the series) -> shaping
(api.money, api.report: Report). The GraphQL layer calls ``process`` and ``report``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from api import customers, dsl, money, planner, resolve, sources
from api.cells import Cell
from api.fx import Converter
from api.keys import Principal
from api.model import QueryPlan, ResolvedPlan, Source
from api.rank import ranking
from api.report import FIRST_PURCHASES, Report, shape
from api.sources import Ctx, Fixed, Results, Shared


def process(ctx: Ctx, plan: QueryPlan, principal: Principal) -> QueryPlan:
    """The plan stage's processor chain, in order: tenant scope, cost limits, time buckets."""
    plan = planner.tenant_scope(plan, principal)
    plan = planner.cost_limits(plan, ctx.settings)
    customers.check_dimensions(plan)
    return planner.time_buckets(plan, ctx.settings)


def report(ctx: Ctx, plan: QueryPlan) -> Report:
    """Run a processed plan (and its comparison) and shape the answer."""
    started = time.perf_counter()
    resolution = resolve.resolve(ctx, plan)
    version = resolution.speculative.versions.rates
    converter = Converter(ctx, plan, version) if plan.converts else None
    results = answer(ctx, resolution.speculative, converter)
    resolved = resolution.settle()  # the late-event search ran alongside the reads
    if resolved is not resolution.speculative:
        results = answer(ctx, resolved, converter)
    took = int((time.perf_counter() - started) * 1000)
    currencies = money.resolve(plan, results.cells.get((None, None), Cell()))
    out = shape(resolved, results.cells, results.groups, took, currencies, results.fixed)
    if plan.compare is not None:
        out.comparison = report(ctx, plan.compare)
    return out


def answer(ctx: Ctx, resolved: ResolvedPlan, converter: Converter | None = None) -> Results:
    """One pass of reads for a resolved plan: shared cells, ranking, the series. With a
    ``converter`` (reportingCurrency), money is converted before groups are ranked."""
    shared = shared_cells(ctx, dsl.shared_requests(resolved))
    totals = sources.group_totals(ctx, dsl.totals_requests(resolved, ctx.settings))
    chosen = ranking(resolved, totals, shared, converter)
    index_of = sources.rollup_index(ctx)
    requests = dsl.series_requests(resolved, chosen.groups, ctx.settings, index_of)
    results = sources.execute(ctx, requests, shared)
    if converter is not None:
        converter.convert(results.cells)  # replaces cells: each made from its own by the rates
        return replace(results, fixed=_converted(results.fixed, converter))
    return results


def _converted(fixed: Fixed | None, converter: Converter) -> Fixed | None:
    """A remembered answer's cells converted: the same cells again under the same rates'
    version and reporting currency (a version is written with every rates load; api.fx's
    tables are remembered by it); without a version nothing names the rates."""
    if fixed is None or converter.version is None:
        return None
    return replace(fixed, variant=(converter.version, converter.target))


def shared_cells(ctx: Ctx, requests: dsl.SharedRequests) -> Shared:
    """Rollup sketches, and NEW/RETURNING_CUSTOMERS whole from their own read (raw + first
    purchases, api.customers)."""
    sketches = sources.sketches(ctx, requests)
    plan = requests.resolved.plan
    firsts = customers.customer_cells(ctx, plan) if requests.firsts else {}
    return Shared(sketches, firsts)


@dataclass(frozen=True)
class CohortAnswer:
    rows: list[customers.CohortRow]
    sources: list[str]
    watermark_ms: int | None
    took_ms: int


def cohort_report(ctx: Ctx, plan: customers.CohortPlan) -> CohortAnswer:
    """The cohort matrix of a validated plan, with the rollup watermark its state lags by."""
    started = time.perf_counter()
    watermark = resolve.watermark(ctx)
    rows = customers.cohorts(ctx, plan)
    took = int((time.perf_counter() - started) * 1000)
    return CohortAnswer(rows, [Source.RAW.value, FIRST_PURCHASES], watermark, took)


def freshness(ctx: Ctx, merchant_id: str) -> tuple[int | None, int | None]:
    """(ingested through, rolled up through) for a merchant, epoch ms or None."""
    return resolve.freshness(ctx, merchant_id)
