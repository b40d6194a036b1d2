"""The GraphQL schema of DESIGN.md (a public contract: only ever extended) and thin resolvers.

Resolvers only translate arguments into a QueryPlan and a Report back into these types; the
work happens in api.planner / api.service, run in a worker thread (the engine client blocks).
Its executor (``api.executor``) completes selections over plain data without graphql-core's
per-field machinery, with the same JSON; see docs/decisions/0100-plain-data-executor.md.
"""

from __future__ import annotations

import time
from datetime import datetime
from enum import Enum
from typing import Any, cast

import strawberry
from anyio import to_thread
from graphql import (
    GraphQLError,
)
from strawberry.fastapi import BaseContext
from strawberry.types import Info

from api import model, planner, report, service
from api.engine import engine_errors
from api.errors import Forbidden, Unauthenticated
from api.executor import Executor
from api.keys import Principal, lookup
from api.ratelimit import RateLimiter
from api.sources import Ctx
from api.timebuckets import iso, zone

Metric = strawberry.enum(model.Metric)
Granularity = strawberry.enum(model.Granularity)
Dimension = strawberry.enum(model.Dimension)


@strawberry.enum(description="Which source answers a report (extension; RAW is admin-only).")
class ForceSource(Enum):
    AUTO = "AUTO"
    RAW = "RAW"


@strawberry.input
class TimeRange:
    start: datetime
    end: datetime


@strawberry.input
class DimensionFilter:
    dimension: Dimension  # type: ignore[valid-type]
    values: list[str]
    exclude: bool | None = False


@strawberry.type
class DimensionValue:
    dimension: Dimension  # type: ignore[valid-type]
    value: str


@strawberry.type
class MetricValue:
    metric: Metric  # type: ignore[valid-type]
    value: float | None
    error_bound: float | None = strawberry.field(
        description="Absolute half-width of a ~95% interval; 0 when exact."
    )


@strawberry.type
class Point:
    start: datetime
    values: list[MetricValue]
    complete: bool = strawberry.field(
        description="The bucket lies wholly inside the range and has fully elapsed."
    )


@strawberry.type
class Series:
    group: list[DimensionValue]
    points: list[Point]


@strawberry.type
class ReportMeta:
    sources: list[str]
    watermark: datetime | None
    took_ms: int


@strawberry.type
class Report:
    series: list[Series]
    totals: list[MetricValue]
    comparison: Report | None
    meta: ReportMeta


@strawberry.type
class Freshness:
    ingested_through: datetime | None
    rolled_up_through: datetime | None


class Backend:
    """The resolvers' calls that reach the engine: the key lookup, the report and freshness.

    The app uses this one; a benchmark of the GraphQL layer alone (bench/graphql_exec.py)
    passes a subclass to ``create_app`` or ``Context`` instead of patching modules."""

    def principal(self, ctx: Ctx, key: str) -> Principal | None:
        return lookup(ctx.client, ctx.names, key)

    def report(self, ctx: Ctx, plan: model.QueryPlan) -> report.Report:
        return service.report(ctx, plan)

    def freshness(self, ctx: Ctx, merchant_id: str) -> tuple[int | None, int | None]:
        return service.freshness(ctx, merchant_id)


class Context(BaseContext):
    """Per request: the shared execution context, the limiter, the presented key and the
    engine-facing calls."""

    def __init__(
        self,
        ctx: Ctx,
        limiter: RateLimiter,
        authorization: str | None,
        backend: Backend | None = None,
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.limiter = limiter
        self.authorization = authorization
        self.backend = backend or Backend()
        self.principal: Principal | None = None


def _principal(info: Info[Context, None]) -> Principal:
    """The caller, from the bearer key; spends one rate-limit token per field resolved.
    Blocking (engine reads): resolvers call it in a worker thread, never on the event loop."""
    context = info.context
    if context.principal is None:
        header = (context.authorization or "").strip()
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("send an API key: Authorization: Bearer <key>")
        with engine_errors("key lookup"):
            principal = context.backend.principal(context.ctx, key.strip())
        if principal is None:
            raise Unauthenticated("unknown or revoked API key")
        if principal.write:
            raise Forbidden(
                "this is a write key: it sends events to the collector and cannot read; "
                "query with a read key (pulse keys create --merchant ID, without --write)"
            )
        context.principal = principal
    with engine_errors("rate limit"):
        context.limiter.take(context.principal.key_id)
    return context.principal


def _metric_values(values: list[report.MetricValue]) -> list[MetricValue]:
    """Served as they are: api.report.MetricValue has MetricValue's attributes (metric, value,
    error_bound) and the type has no resolvers or interfaces, so both executors read them like
    MetricValue objects; copying 3,600 of them per 30-day hourly report cost ~1.3 ms."""
    return cast("list[MetricValue]", values)


def _ts(ms: int | None, tz_name: str) -> datetime | None:
    return None if ms is None else iso(ms, zone(tz_name))


def to_graphql(rep: report.Report) -> Report:
    tz = zone(rep.timezone)
    series = [
        Series(
            group=[DimensionValue(dimension=d, value=v) for d, v in s.group],
            points=[
                Point(
                    start=iso(p.start_ms, tz), values=_metric_values(p.values), complete=p.complete
                )
                for p in s.points
            ],
        )
        for s in rep.series
    ]
    meta = ReportMeta(
        sources=rep.sources, watermark=_ts(rep.watermark_ms, rep.timezone), took_ms=rep.took_ms
    )
    comparison = to_graphql(rep.comparison) if rep.comparison else None
    return Report(
        series=series, totals=_metric_values(rep.totals), comparison=comparison, meta=meta
    )


def _filters(filters: list[DimensionFilter] | None) -> list[model.Filter]:
    return [model.Filter(f.dimension, tuple(f.values), bool(f.exclude)) for f in (filters or [])]


@strawberry.type
class Query:
    @strawberry.field(description="A time-series report for one merchant.")  # type: ignore[untyped-decorator]
    async def metrics(
        self,
        info: Info[Context, None],
        merchant_id: strawberry.ID,
        range: TimeRange,
        metrics: list[Metric],  # type: ignore[valid-type]
        granularity: Granularity | None = model.Granularity.HOUR,  # type: ignore[valid-type]
        timezone: str | None = "UTC",
        group_by: list[Dimension] | None = (),  # type: ignore[valid-type,assignment]
        filters: list[DimensionFilter] | None = (),  # type: ignore[assignment]
        compare_to: TimeRange | None = strawberry.UNSET,
        limit: int | None = 10,
        force_source: ForceSource | None = ForceSource.AUTO,
    ) -> Report:
        principal = await to_thread.run_sync(_principal, info)
        if force_source is ForceSource.RAW and not principal.admin:
            raise Forbidden("forceSource: RAW is for admin keys")
        plan = planner.build_plan(
            str(merchant_id),
            range.start,
            range.end,
            metrics,
            granularity=granularity or model.Granularity.HOUR,
            timezone=timezone or "UTC",
            group_by=group_by or (),
            filters=_filters(list(filters or [])),
            limit=10 if limit is None else limit,
            now_ms=int(time.time() * 1000),
            force_source=model.Source.RAW if force_source is ForceSource.RAW else None,
        )
        if compare_to:
            plan = planner.with_comparison(plan, compare_to.start, compare_to.end)
        ctx = info.context.ctx
        plan = service.process(ctx, plan, principal)
        rep = await to_thread.run_sync(info.context.backend.report, ctx, plan)
        return to_graphql(rep)

    @strawberry.field(description="How fresh a merchant's data is.")  # type: ignore[untyped-decorator]
    async def freshness(self, info: Info[Context, None], merchant_id: strawberry.ID) -> Freshness:
        principal = await to_thread.run_sync(_principal, info)
        planner.tenant_scope(
            model.QueryPlan(str(merchant_id), 0, 1, (model.Metric.EVENTS,)), principal
        )
        ingested, rolled = await to_thread.run_sync(
            info.context.backend.freshness, info.context.ctx, str(merchant_id)
        )
        return Freshness(
            ingested_through=_ts(ingested, "UTC"), rolled_up_through=_ts(rolled, "UTC")
        )


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """No-op: api.masking logs what is ours; client mistakes are not server errors."""


def build_schema(extensions: list[Any], *, plain_executor: bool = True) -> strawberry.Schema:
    """The API schema; ``plain_executor=False`` keeps graphql-core's executor (benchmarks)."""
    executor = Executor if plain_executor else None
    return Schema(query=Query, extensions=extensions, execution_context_class=executor)
