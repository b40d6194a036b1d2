"""The GraphQL schema of DESIGN.md (a public contract: only ever extended) and thin resolvers.

Resolvers only translate arguments into a QueryPlan and a Report back into these types; the
work happens in api.planner / api.service, run in a worker thread (the engine client blocks).
Its executor (``api.executor``) completes selections over plain data without graphql-core's
per-field machinery, with the same JSON; see docs/decisions/0100-plain-data-executor.md.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Hashable, Sequence
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, NamedTuple, cast, overload
from zoneinfo import ZoneInfo

import strawberry
from graphql import (
    GraphQLError,
)
from strawberry.fastapi import BaseContext
from strawberry.types import Info

from api import customers, funnel_read, funnel_schema, model, planner, report, service
from api import funnel as funnels
from api.authcache import KeyGuard
from api.budget import Cost
from api.encoded import Keyed, Run
from api.engine import engine_errors
from api.errors import BadInput, Forbidden, RateLimited, Unauthenticated
from api.executor import Executor
from api.funnel_schema import FUNNEL_LIMITS, FunnelKey, FunnelReport, FunnelStepInput
from api.hop import in_thread
from api.keys import Principal, lookup
from api.ratelimit import RateLimiter
from api.sources import Ctx
from api.timebuckets import iso, zone

LIMITS = (
    "Limits (server settings, defaults in brackets): range at most max_range_days [1098] days, "
    "at most max_buckets [5000] buckets, buckets x groups at most max_points [100000], "
    "limit at most max_limit [100]; each exceeded one is a BAD_USER_INPUT error."
)


COHORT_LIMITS = (
    "Limits: range at most max_range_days [1098] days, periods 1 to cohort_max_periods [60], "
    "at most cohort_max_cohorts [400] cohorts, at most customer_max_keys [500000] "
    "(period, customer) pairs read; each exceeded one is a BAD_USER_INPUT error."
)


def _describe(enum: Any, values: dict[str, str]) -> Any:
    """Attach a description to every value of a strawberry enum (wrapping a model enum, whose
    members cannot carry them). A value missing here stays undocumented, which
    tests/api/test_schema_docs.py reports by name."""
    definition = enum.__strawberry_definition__
    for value in definition.values:
        value.description = values.get(value.name)
    return enum


Metric = _describe(
    strawberry.enum(
        model.Metric,
        description="A measure computed per bucket and in totals. Money is in major units "
        "(e.g. 12.5 = 12.50) of MetricValue.currency, exact to 1/1000; amounts in different "
        "currencies are never added (see reportingCurrency); a duplicate event_id counts once.",
    ),
    {
        "EVENTS": "Count of events of any type.",
        "PAYMENTS": "Count of payment events with status succeeded.",
        "GROSS_SALES": "Sum of amount over succeeded payments (money, major units).",
        "REFUNDS": "Sum of amount over refund events (money, major units).",
        "NET_SALES": "GROSS_SALES minus REFUNDS (money, major units; may be negative).",
        "AVERAGE_TICKET": "GROSS_SALES / PAYMENTS (money, major units); null without payments.",
        "UNIQUE_CUSTOMERS": "Distinct customer_id values; approximate (HyperLogLog sketches) "
        "where rollups answer, with the ~95% half-width in errorBound; not additive across "
        "buckets.",
        "PAYMENT_SUCCESS_RATE": "Succeeded / (succeeded + failed) payments, a fraction in "
        "[0, 1]; pending payments are excluded; null when there are none.",
        "NEW_CUSTOMERS": "Distinct customers whose first-ever succeeded payment with the "
        "merchant (all retained history, late events included) falls in the bucket; exact. "
        "In totals the range is one bucket. With filters or groupBy: customers with a "
        "matching succeeded payment in the bucket whose first-ever one (of any dimension "
        "values) is in it. Cannot be grouped or filtered by EVENT_TYPE or STATUS "
        "(BAD_USER_INPUT).",
        "RETURNING_CUSTOMERS": "Distinct customers with a succeeded payment in the bucket "
        "whose first-ever one was earlier than the bucket; exact. NEW_CUSTOMERS + "
        "RETURNING_CUSTOMERS = the bucket's paying customers. Same filter, groupBy and "
        "EVENT_TYPE/STATUS rules as NEW_CUSTOMERS.",
        "FAILED_PAYMENTS": "Count of payment events with status failed (group or filter by "
        "DECLINE_CODE for why).",
        "REFUND_RATE": "REFUNDS / GROSS_SALES over the same events, a fraction (may exceed 1 "
        "when refunds of earlier sales outweigh the bucket's sales); null when GROSS_SALES is 0. "
        "Its amounts follow the money rules: converted with reportingCurrency, and "
        "BAD_USER_INPUT when they are in several currencies without it or a CURRENCY split.",
        "DISPUTES": "Count of dispute events (chargebacks opened against the merchant).",
        "DISPUTE_RATE": "DISPUTES / PAYMENTS over the same events, a fraction; null when "
        "PAYMENTS is 0.",
    },
)
Granularity = _describe(
    strawberry.enum(
        model.Granularity,
        description="Bucket size: calendar buckets in the request's IANA time zone (DST-aware), "
        "half-open [start, end).",
    ),
    {
        "MINUTE": "One bucket per wall-clock minute (answered from raw events).",
        "HOUR": "One bucket per wall-clock hour (a DST fall-back hour is its own bucket).",
        "DAY": "One bucket per local calendar day (23, 24 or 25 hours long).",
        "WEEK": "One bucket per local calendar week, starting Monday 00:00.",
        "MONTH": "One bucket per local calendar month.",
        "ALL": "A single bucket equal to the whole range.",
    },
)
Dimension = _describe(
    strawberry.enum(
        model.Dimension,
        description="An event attribute to group or filter by. An event without the attribute "
        "has the value __none__ (which filters can name too).",
    ),
    {
        "EVENT_TYPE": "event_type: payment, refund, dispute, page_view, checkout_start or "
        "another type.",
        "STATUS": "status of a payment: succeeded, failed or pending.",
        "PAYMENT_METHOD": "payment_method as sent by the producer (e.g. card, wallet).",
        "STORE_ID": "store_id: the merchant's store or point of sale.",
        "COUNTRY": "country: ISO 3166-1 alpha-2 code.",
        "CHANNEL": "channel: web, app or pos.",
        "DEVICE": "device as sent by the producer (e.g. ios, android, desktop).",
        "CURRENCY": "currency: ISO 4217 code of the event's amount (__none__ without one). "
        "Grouping or filtering by it splits money that is in several currencies.",
        "DECLINE_CODE": "decline_code: why a failed payment failed (e.g. insufficient_funds, "
        "do_not_honor); __none__ for events without one.",
    },
)


@strawberry.enum(description="Which source answers a report (extension; RAW is admin-only).")
class ForceSource(Enum):
    AUTO = strawberry.enum_value(
        "AUTO", description="Rollups for complete, unchanged hours; raw events for the rest."
    )
    RAW = strawberry.enum_value(
        "RAW",
        description="Raw events only (slower; for checking rollups). Admin keys only, "
        "else FORBIDDEN.",
    )


@strawberry.input(
    description="A half-open time range [start, end). A DateTime with an offset is that "
    "instant; without one it is wall time in the request's timezone. end must be after start."
)
class TimeRange:
    start: datetime = strawberry.field(description="First instant included (ISO 8601).")
    end: datetime = strawberry.field(description="First instant excluded (ISO 8601).")


@strawberry.input(
    description="Keep (or with exclude, drop) events whose dimension has one of the values. "
    "Filters on different dimensions combine with AND."
)
class DimensionFilter:
    dimension: Dimension = strawberry.field(  # type: ignore[valid-type]
        description="The attribute compared."
    )
    values: list[str] = strawberry.field(
        description="1 to 100 values of at most 128 characters each, matched exactly; __none__ "
        "matches events without the attribute. Otherwise BAD_USER_INPUT."
    )
    exclude: bool | None = strawberry.field(
        default=False, description="true keeps the events whose value is not listed."
    )


@strawberry.type(description="One dimension's value identifying a group of a groupBy report.")
class DimensionValue:
    dimension: Dimension = strawberry.field(  # type: ignore[valid-type]
        description="The grouped dimension."
    )
    value: str = strawberry.field(description="Its value; __none__ for events without it.")


@strawberry.type(description="One metric's value in a bucket or in the totals.")
class MetricValue:
    metric: Metric = strawberry.field(  # type: ignore[valid-type]
        description="Which metric (one entry per requested metric, in request order)."
    )
    value: float | None = strawberry.field(
        description="The value (money in major units, rates as fractions); null where the "
        "metric is undefined (AVERAGE_TICKET without payments, PAYMENT_SUCCESS_RATE without "
        "succeeded or failed payments, REFUND_RATE without gross sales, DISPUTE_RATE without "
        "payments)."
    )
    error_bound: float | None = strawberry.field(
        description="Absolute half-width of a ~95% interval; 0 when exact."
    )
    currency: str | None = strawberry.field(
        description="ISO 4217 code of a money value (GROSS_SALES, REFUNDS, NET_SALES, "
        "AVERAGE_TICKET): reportingCurrency when given, else the one currency of the report's "
        "money (of the group's, when grouped by CURRENCY); null for other metrics, for money "
        "without any currency, and for totals across CURRENCY groups in different currencies "
        "(whose value is null too)."
    )


@strawberry.type(description="One time bucket of a series.")
class Point:
    start: datetime = strawberry.field(
        description="The bucket's start, with the offset of the request's time zone."
    )
    values: list[MetricValue] = strawberry.field(
        description="The metrics over the bucket, in request order (zeros for an empty bucket)."
    )
    complete: bool = strawberry.field(
        description="The bucket lies wholly inside the range and has fully elapsed."
    )


@strawberry.type(description="The buckets of one group (the only series when not grouping).")
class Series:
    group: list[DimensionValue] = strawberry.field(
        description="The group's value per groupBy dimension; empty when not grouping."
    )
    points: list[Point] = strawberry.field(
        description="Every bucket meeting the range, in time order, empty ones included."
    )


@strawberry.type(description="How a report was answered.")
class ReportMeta:
    sources: list[str] = strawberry.field(
        description="What answered: rollups (hourly aggregates) and/or raw (events); "
        "first_purchases (each customer's first purchase) for NEW/RETURNING_CUSTOMERS and "
        "cohorts."
    )
    watermark: datetime | None = strawberry.field(
        description="The instant through which rollups are complete; null when no rollups "
        "were used. Later data came from raw events."
    )
    took_ms: int = strawberry.field(description="Server time for the report, in milliseconds.")


@strawberry.type(description="A time-series report: series, totals, an optional comparison.")
class Report:
    series: list[Series] = strawberry.field(
        description="One series, or with groupBy the top `limit` groups by the first metric "
        "over the whole range (nulls last, ties by value)."
    )
    totals: list[MetricValue] = strawberry.field(
        description="The metrics over the whole range and every group (not only the top ones)."
    )
    comparison: Report | None = strawberry.field(
        description="The same report over compareTo; null without compareTo."
    )
    meta: ReportMeta = strawberry.field(description="Sources, watermark and server time.")


@strawberry.type(
    description="Customers whose first-ever succeeded payment with the merchant falls in one "
    "calendar period (DAY, WEEK or MONTH in the request's time zone)."
)
class Cohort:
    start: datetime = strawberry.field(
        description="The cohort's period start, with the offset of the request's time zone."
    )
    customers: int = strawberry.field(
        description="The cohort's size: customers whose first-ever succeeded payment falls in "
        "the period (exact; late events included)."
    )
    retained: list[float | None] = strawberry.field(
        description="retained[i] (i = 0 ... periods-1): the share of the cohort with at least "
        "one succeeded payment in the i-th period from the cohort's own, so retained[0] is "
        "1.0; null for a period that has not begun, and for every period of an empty cohort "
        "(customers = 0: no share to take)."
    )


@strawberry.type(description="A cohort retention matrix: one row per cohort, oldest first.")
class CohortReport:
    cohorts: list[Cohort] = strawberry.field(
        description="Every period starting inside the range is a cohort, empty ones included."
    )
    meta: ReportMeta = strawberry.field(
        description="Sources (raw events and the first-purchase state), the rollup watermark "
        "through which first purchases are folded in (later payments are read from raw), and "
        "server time."
    )


@strawberry.type(description="How far a merchant's data has arrived and been rolled up.")
class Freshness:
    ingested_through: datetime | None = strawberry.field(
        description="Newest ingestion time of the merchant's indexed events (UTC); null when none."
    )
    rolled_up_through: datetime | None = strawberry.field(
        description="The instant through which hourly rollups are complete (UTC); null "
        "before the first rollup."
    )


@strawberry.type(description="The caller, as identified by the presented API key.")
class Viewer:
    key_id: str = strawberry.field(description="Public id of the key (not the key).")
    admin: bool = strawberry.field(description="An admin key may read every merchant.")
    merchant_id: strawberry.ID | None = strawberry.field(
        description="The one merchant a merchant key may read; null for admin keys."
    )


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

    def cohorts(self, ctx: Ctx, plan: customers.CohortPlan) -> service.CohortAnswer:
        return service.cohort_report(ctx, plan)

    def funnel(self, ctx: Ctx, plan: funnels.FunnelPlan) -> list[int]:
        return funnel_read.counts(ctx, plan)


class Context(BaseContext):
    """Per request: the shared execution context, the limiter, the presented key, the
    engine-facing calls, the key guard (caches, api.authcache) and client address, and the
    cost priced by api.budget."""

    def __init__(
        self,
        ctx: Ctx,
        limiter: RateLimiter,
        authorization: str | None,
        backend: Backend | None = None,
        guard: KeyGuard | None = None,
        address: str = "",
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.limiter = limiter
        self.authorization = authorization
        self.backend = backend or Backend()
        self.guard = guard
        self.address = address
        self.principal: Principal | None = None
        self.cost: Cost | None = None
        self.charged = False
        self.refused: RateLimited | None = None
        self.lock = threading.Lock()  # fields resolve concurrently: one lookup, one charge

    def tokens(self) -> int:
        """Rate-limit tokens of this request: its cost, or one without a budget extension."""
        return self.cost.tokens if self.cost else 1


def _principal(info: Info[Context, None]) -> Principal:
    """The caller, from the bearer key; charges the request's tokens (its cost) once.
    Blocking (engine reads): resolvers call it in a worker thread, never on the event loop."""
    context = info.context
    with context.lock:
        if context.principal is None:
            context.principal = _authenticate(context)
        if context.refused is not None:
            raise context.refused
        if not context.charged:
            context.charged = True
            try:
                with engine_errors("rate limit"):
                    context.limiter.take(context.principal.key_id, context.tokens())
            except RateLimited as refused:
                context.refused = refused  # the request's other fields get the same answer
                raise
    return context.principal


def _authenticate(context: Context) -> Principal:
    header = (context.authorization or "").strip()
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthenticated("send an API key: Authorization: Bearer <key>")

    def fetch(presented: str) -> Principal | None:
        return context.backend.principal(context.ctx, presented)

    with engine_errors("key lookup"):
        if context.guard is not None:
            principal: Principal | None = context.guard.principal(
                key.strip(), context.address, fetch
            )
        else:
            principal = fetch(key.strip())
    if principal is None:
        raise Unauthenticated("unknown or revoked API key")
    if principal.write:
        raise Forbidden(
            "this is a write key: it sends events to the collector and cannot read; "
            "query with a read key (pulse keys create --merchant ID, without --write)"
        )
    return principal


def _metric_values(values: list[report.MetricValue]) -> list[MetricValue]:
    """Served as they are: api.report.MetricValue has MetricValue's attributes (metric, value,
    error_bound, currency) and the type has no resolvers or interfaces, so both executors read
    them like MetricValue objects; copying 3,600 of them per 30-day hourly report cost ~1.3 ms."""
    return cast("list[MetricValue]", values)


def _ts(ms: int | None, tz_name: str) -> datetime | None:
    return None if ms is None else iso(ms, zone(tz_name))


class _Point(NamedTuple):
    """A served Point: the ``Point`` type's attributes (the type has no resolvers, interfaces
    or ``is_type_of``, so both executors read it like a ``Point``), built as a tuple: ~720 per
    30-day hourly report, where strawberry's dataclass ``__init__`` cost ~3x as much."""

    start: datetime
    values: list[report.MetricValue]  # read like MetricValue objects (``_metric_values``)
    complete: bool


class _Instant(datetime):
    """A bucket start that knows its ISO text: the DateTime scalar serializes with
    ``isoformat()``, which looks the zone's offset up again for every point of every answer.
    Equal to ``iso(ms, tz)``; its ``isoformat()`` (no arguments) returns the same text."""

    __slots__ = ("text",)  # ~160 B an entry of ``_start``'s cache with the text, not ~300
    text: str

    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        if sep == "T" and timespec == "auto":
            return self.text
        return super().isoformat(sep, timespec)


@functools.lru_cache(maxsize=65_536)
def _start(ts_ms: int, tz: ZoneInfo) -> datetime:
    """A bucket start, remembered: dashboards ask the same hours again and again, and
    building each one from epoch ms in a zone, then its text, was ~2 us of ~720 per report."""
    instant = _Instant.fromtimestamp(ts_ms / 1000, tz)  # as ``iso`` builds it
    instant.text = datetime.isoformat(instant)
    return instant


class _ServedPoints(Keyed):
    """A series' ``api.report.Points`` served as ``_Point`` items, each built only when read:
    the plain executor encodes the list through its keys (api.encoded) and builds only the
    points it has not encoded before; graphql-core's path reads it like a list."""

    __slots__ = ("_points", "_tz")

    def __init__(self, points: report.Points, tz: ZoneInfo) -> None:
        self._points, self._tz = points, tz

    def __len__(self) -> int:
        return len(self._points)

    @overload
    def __getitem__(self, i: int) -> _Point: ...
    @overload
    def __getitem__(self, i: slice) -> list[_Point]: ...
    def __getitem__(self, i: int | slice) -> _Point | list[_Point]:
        if isinstance(i, slice):
            return [self._serve(p) for p in self._points[i]]
        return self._serve(self._points[i])

    def _serve(self, p: report.Point) -> _Point:
        return _Point(_start(p.start_ms, self._tz), p.values, p.complete)

    def context(self) -> Hashable:
        return self._points.context(), self._tz.key

    def item_keys(self) -> Sequence[report.PointKey | Run | None]:
        return self._points.item_keys()

    def keys_within(self, start: int, stop: int) -> list[report.PointKey | None]:
        return self._points.keys_within(start, stop)


def _points(points: Sequence[report.Point], tz: ZoneInfo) -> list[Point]:
    if isinstance(points, report.Points):
        return cast("list[Point]", _ServedPoints(points, tz))
    start = _start
    return cast(
        "list[Point]", [_Point(start(p.start_ms, tz), p.values, p.complete) for p in points]
    )


def to_graphql(rep: report.Report) -> Report:
    tz = zone(rep.timezone)
    series = [
        Series(
            group=[DimensionValue(dimension=d, value=v) for d, v in s.group],
            points=_points(s.points, tz),
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


def _arg(description: str) -> Any:
    return strawberry.argument(description=description)


MerchantArg = Annotated[
    strawberry.ID,
    _arg(
        "The merchant (1-64 characters of [A-Za-z0-9_.-]). A merchant key may name only its "
        "own merchant (else FORBIDDEN); an admin key any."
    ),
]


@strawberry.type(
    description="Every field needs Authorization: Bearer <API key> (UNAUTHENTICATED without a "
    "valid one) and spends one token of the key's per-minute rate limit (RATE_LIMITED when "
    "spent). Errors carry extensions.code: BAD_USER_INPUT, UNAUTHENTICATED, FORBIDDEN, "
    "RATE_LIMITED, FX_RATE_MISSING (reportingCurrency needs an exchange rate not loaded) or "
    "INTERNAL (engine down or too slow; retry)."
)
class Query:
    @strawberry.field(  # type: ignore[untyped-decorator]
        description="A time-series report for one merchant: every bucket of the range in the "
        "time zone, totals, optionally grouped, filtered and compared with another range. " + LIMITS
    )
    async def metrics(
        self,
        info: Info[Context, None],
        merchant_id: MerchantArg,
        range: Annotated[TimeRange, _arg("The period reported, half-open [start, end).")],
        metrics: Annotated[
            list[Metric],  # type: ignore[valid-type]
            _arg("The metrics, at least one; values come back in this order."),
        ],
        granularity: Annotated[
            Granularity | None,  # type: ignore[valid-type]
            _arg("Bucket size (calendar buckets in timezone)."),
        ] = model.Granularity.HOUR,
        timezone: Annotated[
            str | None,
            _arg(
                "IANA time zone name (e.g. Europe/Berlin, Asia/Kolkata) for buckets and "
                "offset-less DateTimes; unknown zones are BAD_USER_INPUT."
            ),
        ] = "UTC",
        group_by: Annotated[
            list[Dimension] | None,  # type: ignore[valid-type]
            _arg(
                "Split into one series per combination of these dimensions' values (each at "
                "most once); the top `limit` by the first metric are returned."
            ),
        ] = (),  # type: ignore[assignment]
        filters: Annotated[
            list[DimensionFilter] | None,
            _arg("Only events matching every filter count (series and totals)."),
        ] = (),  # type: ignore[assignment]
        compare_to: Annotated[
            TimeRange | None,
            _arg(
                "Another range answered the same way, in Report.comparison (e.g. the "
                "previous period); same limits."
            ),
        ] = strawberry.UNSET,
        limit: Annotated[
            int | None, _arg("How many groups to return with groupBy: 1 to max_limit [100].")
        ] = 10,
        force_source: Annotated[
            ForceSource | None, _arg("Which source answers (admin keys only for RAW).")
        ] = ForceSource.AUTO,
        reporting_currency: Annotated[
            str | None,
            _arg(
                "ISO 4217 code (e.g. EUR): money is converted to it at the rate of each "
                "event's UTC date (units per USD loaded by pulse fx load; the latest rate on or "
                "before the date, at most 7 days old), per currency and day before adding, and "
                "the sum rounded once to 1/1000, half to even. A missing rate is an "
                "FX_RATE_MISSING error naming the currency and date. Without it, money in more "
                "than one currency is a BAD_USER_INPUT error unless split by CURRENCY."
            ),
        ] = None,
    ) -> Report:
        def answer() -> report.Report:
            # One worker-thread hop for the key check (engine reads on a cache miss) and the
            # report, not one each: a hop costs ~60 us of CPU (decision 0255).
            principal = _principal(info)
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
                reporting_currency=reporting_currency,
            )
            if compare_to:
                plan = planner.with_comparison(plan, compare_to.start, compare_to.end)
            ctx = info.context.ctx
            return info.context.backend.report(ctx, service.process(ctx, plan, principal))

        return to_graphql(await in_thread(answer))

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="A funnel for one merchant: how many sessions (or customers) entered with "
        "step 1 in the range and went on through the steps in order within withinSeconds of "
        "entering. Exact, from raw events (docs/decisions/0215). " + FUNNEL_LIMITS
    )
    async def funnel(
        self,
        info: Info[Context, None],
        merchant_id: MerchantArg,
        range: Annotated[
            TimeRange,
            _arg(
                "Keys enter with a step-1 event in [start, end); later steps may follow up to "
                "withinSeconds after the entry, past end. Offset-less DateTimes are UTC."
            ),
        ],
        steps: Annotated[
            list[FunnelStepInput],
            _arg(
                "The steps in order. A key reaches step k when distinct events matching steps "
                "2..k follow its entry in order, each at or after the previous one."
            ),
        ],
        by: Annotated[
            FunnelKey | None,  # type: ignore[valid-type]
            _arg("What goes through the funnel: a session_id or a customer_id."),
        ] = funnels.FunnelKey.SESSION,
        within_seconds: Annotated[
            int | None,
            _arg(
                "Every step must happen at most this many seconds after the entering event "
                "(inclusive)."
            ),
        ] = 1800,
        filters: Annotated[
            list[DimensionFilter] | None,
            _arg("Only events matching every filter take part (entry and later steps)."),
        ] = (),  # type: ignore[assignment]
    ) -> FunnelReport:
        started = time.perf_counter()
        principal = await in_thread(_principal, info)
        plan = funnels.build_plan(
            str(merchant_id),
            range.start,
            range.end,
            funnel_schema.steps_of(steps),
            by or funnels.FunnelKey.SESSION,
            1800 if within_seconds is None else within_seconds,
            _filters(list(filters or [])),
            info.context.ctx.settings,
        )
        plan = funnel_schema.tenant_scope(plan, principal)
        counts = await in_thread(info.context.backend.funnel, info.context.ctx, plan)
        return funnel_schema.report(plan, counts, started)

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="Cohort retention for one merchant: customers grouped by the period of "
        "their first-ever succeeded payment, and the share of each cohort paying again in "
        "each following period. Exact. " + COHORT_LIMITS
    )
    async def cohorts(
        self,
        info: Info[Context, None],
        merchant_id: MerchantArg,
        range: Annotated[
            TimeRange, _arg("Cohorts are the periods whose start lies in [start, end).")
        ],
        granularity: Annotated[
            Granularity | None,  # type: ignore[valid-type]
            _arg("The period: DAY, WEEK (Monday) or MONTH in timezone; others BAD_USER_INPUT."),
        ] = model.Granularity.WEEK,
        timezone: Annotated[
            str | None,
            _arg("IANA time zone of the periods and of offset-less DateTimes."),
        ] = "UTC",
        periods: Annotated[
            int | None,
            _arg("How many periods each cohort's retained list covers, from its own on."),
        ] = 8,
    ) -> CohortReport:
        principal = await in_thread(_principal, info)
        tz_name = timezone or "UTC"
        zone(tz_name)
        if not planner.MERCHANT_RE.fullmatch(str(merchant_id)):
            raise BadInput("merchantId must be 1-64 characters of [A-Za-z0-9_.-]")
        if not principal.may_read(str(merchant_id)):
            raise Forbidden("this API key may not read that merchant")
        plan = customers.plan_request(
            info.context.ctx.settings,
            str(merchant_id),
            range.start,
            range.end,
            granularity or model.Granularity.WEEK,
            tz_name,
            8 if periods is None else periods,
            int(time.time() * 1000),
        )
        answer = await in_thread(info.context.backend.cohorts, info.context.ctx, plan)
        tz = zone(tz_name)
        rows = [
            Cohort(start=iso(r.start_ms, tz), customers=r.customers, retained=r.retained)
            for r in answer.rows
        ]
        meta = ReportMeta(
            sources=answer.sources,
            watermark=_ts(answer.watermark_ms, tz_name),
            took_ms=answer.took_ms,
        )
        return CohortReport(cohorts=rows, meta=meta)

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="How fresh a merchant's data is: what has been ingested and rolled up."
    )
    async def freshness(self, info: Info[Context, None], merchant_id: MerchantArg) -> Freshness:
        principal = await in_thread(_principal, info)
        planner.tenant_scope(
            model.QueryPlan(str(merchant_id), 0, 1, (model.Metric.EVENTS,)), principal
        )
        ingested, rolled = await in_thread(
            info.context.backend.freshness, info.context.ctx, str(merchant_id)
        )
        return Freshness(
            ingested_through=_ts(ingested, "UTC"), rolled_up_through=_ts(rolled, "UTC")
        )

    @strawberry.field(  # type: ignore[untyped-decorator]
        description="Who the presented key belongs to (what a client shows after sign-in)."
    )
    async def viewer(self, info: Info[Context, None]) -> Viewer:
        principal = await in_thread(_principal, info)
        merchant = principal.merchant_id
        return Viewer(
            key_id=principal.key_id,
            admin=principal.admin,
            merchant_id=None if merchant is None else strawberry.ID(merchant),
        )


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """No-op: api.masking logs what is ours; client mistakes are not server errors."""


def build_schema(extensions: list[Any], *, plain_executor: bool = True) -> strawberry.Schema:
    """The API schema; ``plain_executor=False`` keeps graphql-core's executor (benchmarks)."""
    executor = Executor if plain_executor else None
    return Schema(query=Query, extensions=extensions, execution_context_class=executor)
