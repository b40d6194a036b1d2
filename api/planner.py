"""The plan stage (pure): validation, then small stateless processors.

``build_plan`` turns resolver arguments into a validated plan; each processor takes a plan
and returns a refined copy (or raises a ClientError). ``split_sources`` decides, hour by hour,
which source answers which part of the range so the two never overlap; source resolution
(api.resolve) calls it with the hours the rollup state serves. Nothing here reads the engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from api.errors import BadInput, Forbidden
from api.keys import Principal
from api.model import (
    HOUR_MS,
    Dimension,
    Filter,
    Granularity,
    Interval,
    Metric,
    QueryPlan,
    ResolvedPlan,
    Source,
    Split,
)
from api.timebuckets import boundaries, zone
from pulse.clock import DAY_MS
from pulse.settings import Settings

MERCHANT_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
CURRENCY_RE = re.compile(r"[A-Z]{3}")
MAX_FILTER_VALUES = 100
MAX_VALUE_LEN = 128


def to_ms(value: datetime, tz_name: str) -> int:
    """An instant; a DateTime without offset is read as wall time in the request's zone."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone(tz_name))
    return int(value.timestamp() * 1000)


def build_plan(
    merchant_id: str,
    start: datetime,
    end: datetime,
    metrics: Iterable[Metric],
    *,
    granularity: Granularity = Granularity.HOUR,
    timezone: str = "UTC",
    group_by: Iterable[Dimension] = (),
    filters: Iterable[Filter] = (),
    limit: int = 10,
    now_ms: int,
    force_source: Source | None = None,
    reporting_currency: str | None = None,
) -> QueryPlan:
    """A validated plan (BadInput on anything a caller must fix)."""
    zone(timezone)
    plan = QueryPlan(
        merchant_id=merchant_id,
        start_ms=to_ms(start, timezone),
        end_ms=to_ms(end, timezone),
        metrics=tuple(dict.fromkeys(metrics)),
        granularity=granularity,
        timezone=timezone,
        group_by=tuple(group_by),
        filters=tuple(filters),
        limit=limit,
        now_ms=now_ms,
        force_source=force_source,
        reporting_currency=reporting_currency,
    )
    validate(plan)
    return plan


def validate(plan: QueryPlan) -> None:
    if not MERCHANT_RE.fullmatch(plan.merchant_id):
        raise BadInput("merchantId must be 1-64 characters of [A-Za-z0-9_.-]")
    if plan.end_ms <= plan.start_ms:
        raise BadInput("range.end must be after range.start")
    if not plan.metrics:
        raise BadInput("ask for at least one metric")
    if plan.limit < 1:
        raise BadInput("limit must be at least 1")
    currency = plan.reporting_currency
    if currency is not None and not CURRENCY_RE.fullmatch(currency):
        raise BadInput("reportingCurrency must be an ISO 4217 code of three capital letters")
    if len(set(plan.group_by)) != len(plan.group_by):
        raise BadInput("groupBy lists a dimension twice")
    for flt in plan.filters:
        if not flt.values or len(flt.values) > MAX_FILTER_VALUES:
            raise BadInput(f"a filter needs 1 to {MAX_FILTER_VALUES} values")
        if any(len(v) > MAX_VALUE_LEN for v in flt.values):
            raise BadInput(f"filter values are at most {MAX_VALUE_LEN} characters")


def with_comparison(plan: QueryPlan, start: datetime, end: datetime) -> QueryPlan:
    """The plan plus the same report over another range (compareTo)."""
    other = replace(plan, start_ms=to_ms(start, plan.timezone), end_ms=to_ms(end, plan.timezone))
    validate(other)
    return replace(plan, compare=other)


# --- processors: plan in, plan out -------------------------------------------------------


def tenant_scope(plan: QueryPlan, principal: Principal) -> QueryPlan:
    """Merchant keys read only their merchant; admin keys any (the key decides, not the query)."""
    if not principal.may_read(plan.merchant_id):
        raise Forbidden("this API key may not read that merchant")
    return plan


def cost_limits(plan: QueryPlan, settings: Settings) -> QueryPlan:
    """Refuse ranges, limits and sizes that would cost more than the settings allow."""
    for part in (plan, plan.compare):
        if part and part.end_ms - part.start_ms > settings.max_range_days * DAY_MS:
            raise BadInput(f"the range is longer than {settings.max_range_days} days")
    if plan.limit > settings.max_limit:
        raise BadInput(f"limit is at most {settings.max_limit}")
    return plan


def time_buckets(plan: QueryPlan, settings: Settings) -> QueryPlan:
    """Fill in the bucket boundaries (and the comparison's), enforcing max_buckets/max_points."""
    tz = zone(plan.timezone)
    bounds = boundaries(plan.start_ms, plan.end_ms, plan.granularity, tz, settings.max_buckets)
    compare = plan.compare and time_buckets(plan.compare, settings)
    out = replace(plan, boundaries=bounds, compare=compare)
    groups = out.limit if out.group_by else 1
    if out.buckets * groups > settings.max_points:
        raise BadInput(
            f"{out.buckets} buckets x {groups} groups exceeds {settings.max_points} points; "
            "lower the limit, shorten the range or coarsen the granularity"
        )
    return out


def split_sources(
    plan: QueryPlan, servable_hours: set[int], watermark_ms: int | None
) -> ResolvedPlan:
    """Complete, unchanged UTC hours lying wholly in the range and in one bucket come from
    rollups; everything else (the open hour, changed hours, sub-hour buckets, the hour around
    a half-hour zone's boundary, the range's ragged ends) from raw. No instant is in both."""
    if plan.force_source is Source.RAW:
        return ResolvedPlan(plan, Split(raw=((plan.start_ms, plan.end_ms),)))
    split = split_range(plan.start_ms, plan.end_ms, plan.boundaries, servable_hours, watermark_ms)
    return ResolvedPlan(plan, split)


def split_range(
    start_ms: int,
    end_ms: int,
    boundaries: tuple[int, ...],
    servable_hours: set[int],
    watermark_ms: int | None,
) -> Split:
    """``split_sources`` of a range with these bucket ``boundaries``: all it reads of a plan
    not forced to raw (api.resolve remembers it per rollup state, decision 0310)."""
    if not servable_hours:
        return Split(raw=((start_ms, end_ms),))
    first = -(-start_ms // HOUR_MS) * HOUR_MS
    last = end_ms - HOUR_MS
    # An hour is inside one bucket unless a boundary falls strictly inside it, which only a
    # boundary off the hour can (a half-hour zone's): those hours are named once here, not
    # searched for with two bisections per hour (a 30-day hourly report has 720 hours). The
    # remainders are taken in C (``map``): most plans have no boundary off the hour.
    cut = (
        {b - b % HOUR_MS for b in boundaries if b % HOUR_MS}
        if any(map(HOUR_MS.__rmod__, boundaries))
        else set()
    )
    low, high, n = min(servable_hours), max(servable_hours), len(servable_hours)
    if (
        not cut
        and first <= low
        and high <= last
        and high - low == (n - 1) * HOUR_MS
        and not any(map(HOUR_MS.__rmod__, servable_hours))
    ):
        # The usual case, without sorting: n distinct whole hours spanning n hours are
        # consecutive, one run (servable hours are a range minus the held and changed ones).
        rollups: tuple[Interval, ...] = ((low, high + HOUR_MS),)
    else:
        rollups = _runs(
            sorted(
                h
                for h in servable_hours
                if first <= h <= last and h % HOUR_MS == 0 and (not cut or h not in cut)
            )
        )
    raw = complement(start_ms, end_ms, rollups)
    return Split(raw=raw, rollups=rollups, watermark_ms=watermark_ms)


def _runs(hours: list[int]) -> tuple[Interval, ...]:
    """The runs of consecutive whole hours of sorted ``hours``, as intervals."""
    if not hours:
        return ()
    ends = [i for i in range(1, len(hours)) if hours[i] - hours[i - 1] != HOUR_MS]
    starts = [0, *ends]
    stops = [*ends, len(hours)]
    return tuple((hours[a], hours[b - 1] + HOUR_MS) for a, b in zip(starts, stops, strict=True))


def merge_runs(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    out: list[Interval] = []
    for a, b in intervals:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return tuple(out)


def complement(start: int, end: int, taken: tuple[Interval, ...]) -> tuple[Interval, ...]:
    """[start, end) minus sorted, disjoint ``taken`` intervals."""
    out: list[Interval] = []
    cursor = start
    for a, b in taken:
        if a > cursor:
            out.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < end:
        out.append((cursor, end))
    return tuple(out)
