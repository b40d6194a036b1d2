"""NEW_CUSTOMERS, RETURNING_CUSTOMERS and cohorts: paying customers per bucket, classified by
their first-ever succeeded payment (storage.first_purchases); docs/decisions/0211.

Both answer exactly. One composite aggregation over the merchant's succeeded payments in the
asked window lists each (group, bucket, customer) once, with the customer's earliest payment
in the window; the customers' first purchases come from the first-purchase state by id
(``mget``). A customer's first is min(stored, earliest in the window), so payments the rollup
job has not folded in yet (the open hour, the last minutes) still count. In a bucket span S
(the bucket cut to the range) a paying customer is NEW when the first lies in S, RETURNING
when it lies before S. Totals treat the range as one span: a customer new in one bucket and
back in a later one is new in the totals, not both.

With ``filters`` and ``groupBy`` a customer counts in a group's bucket when one of its matching
succeeded payments falls there; new or returning still looks at the first-ever payment of any
dimension values. ``EVENT_TYPE`` and ``STATUS`` cannot split these metrics (they count
succeeded payments only): asking for it is a BAD_USER_INPUT error. The distinct keys one
request may read are capped (``customer_max_keys``), also a BAD_USER_INPUT error.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from api import dsl, sources
from api.cells import Cell
from api.errors import BadInput, UnexpectedAnswer
from api.model import Base, Dimension, Filter, Granularity, QueryPlan, Source
from api.planner import to_ms
from api.sources import Cells, Ctx, GroupKey
from api.timebuckets import boundaries, zone
from ingest.contract import customer_hash
from pulse.settings import Settings
from storage import rollup_schema as rs

UNSPLITTABLE = (Dimension.EVENT_TYPE, Dimension.STATUS)
COHORT_GRANULARITIES = (Granularity.DAY, Granularity.WEEK, Granularity.MONTH)
PAGE = 5000
NOT_BEGUN = None

# (group values, bucket start or None for ALL) -> customer hashes paying there
Active = dict[tuple[GroupKey, int | None], set[int]]


def check_dimensions(plan: QueryPlan) -> None:
    """Refuse the dimensions NEW/RETURNING_CUSTOMERS cannot be split or filtered by."""
    if Base.FIRSTS not in plan.bases:
        return
    used = {*plan.group_by, *(f.dimension for f in plan.filters)}
    bad = [d.value for d in UNSPLITTABLE if d in used]
    if bad:
        raise BadInput(
            f"NEW_CUSTOMERS and RETURNING_CUSTOMERS count succeeded payments only and cannot "
            f"be grouped or filtered by {', '.join(bad)}; ask for them in a separate report "
            "without it"
        )


def active_customers(
    ctx: Ctx,
    merchant_id: str,
    span: tuple[int, int],
    histogram: tuple[Granularity, str] | None,
    group_by: Sequence[Dimension] = (),
    filters: Sequence[Filter] = (),
) -> tuple[Active, dict[int, int]]:
    """Who paid where in [start, end): (group, bucket start) -> customers, and each
    customer's earliest succeeded payment in the span."""
    query = dsl.paying_customers_query(merchant_id, span, filters)
    keys_of = dsl.paying_customers_keys(group_by, histogram)
    active: Active = {}
    earliest: dict[int, int] = {}
    keys = 0
    for page in _pages(ctx, query, keys_of, span):
        keys += len(page)
        if keys > ctx.settings.customer_max_keys:
            raise BadInput(
                f"more than {ctx.settings.customer_max_keys} paying customer-buckets to "
                "classify; shorten the range, coarsen the granularity or group by less"
            )
        for b in page:
            key = b["key"]
            who = customer_hash(str(key["c"]))
            group = tuple(rs.MISSING if key[f"d{i}"] is None else str(key[f"d{i}"])
                          for i in range(len(group_by)))  # fmt: skip
            bucket = int(key["b"]) if histogram is not None else None
            active.setdefault((group, bucket), set()).add(who)
            first = int(b["first"]["value"])
            earliest[who] = min(first, earliest.get(who, first))
    return active, earliest


def _pages(
    ctx: Ctx,
    query: dict[str, Any],
    keys_of: list[dict[str, Any]],
    span: tuple[int, int],
    index: str | None = None,
) -> Iterable[list[dict[str, Any]]]:
    """Composite pages over the raw members covering ``span``, or over ``index`` when given."""
    after: dict[str, Any] | None = None
    while True:
        body = dsl.first_payments_page(query, keys_of, PAGE, after)
        if index is None:
            answer = ctx.search(Source.RAW, body, (span,))
        else:
            answer = sources.search_indices(ctx, index, body)
        agg = (answer.get("aggregations") or {}).get("k") or {}
        buckets: list[dict[str, Any]] = agg.get("buckets") or []
        if buckets:
            yield buckets
        after = agg.get("after_key")
        if not after or len(buckets) < PAGE:
            return


def unfolded_before(ctx: Ctx, merchant_id: str, before_ms: int, w: int | None) -> dict[int, int]:
    """Earliest succeeded payment per customer before ``before_ms`` among the events the state
    may not hold yet: those ingested after W (each run folds in what it ingested up to its W,
    rollups.customers.observe_ingested); every event before any run. A late payment older
    than the asked window then still moves a first purchase at once."""
    index = None
    if w is not None:
        index = _days_written_after(ctx, before_ms, w)
        if not index:
            return {}
    query = dsl.unfolded_payments_query(merchant_id, before_ms, w)
    return _earliest_by_customer(ctx, query, (0, before_ms), index)


def _earliest_by_customer(
    ctx: Ctx, query: dict[str, Any], span: tuple[int, int], index: str | None = None
) -> dict[int, int]:
    """Customer hash -> earliest ``occurred_at`` among the payments ``query`` matches."""
    out: dict[int, int] = {}
    for page in _pages(ctx, query, dsl.customer_key(), span, index):
        for b in page:
            who, first = customer_hash(str(b["key"]["c"])), int(b["first"]["value"])
            out[who] = min(first, out.get(who, first))
    return out


def _days_written_after(ctx: Ctx, before_ms: int, w: int) -> str:
    """The raw indices before ``before_ms`` that may hold an event ingested after W: those
    whose day's arrivals bound (storage.arrivals) is above W or unknown (decision 0048), so
    the look-back skips every day nothing arrived in since the last rollup run."""
    found = [m for m in sources.raw_members(ctx) if m.start_ms is None or m.start_ms < before_ms]
    days = {m.start_ms // rs.DAY_MS for m in found if m.start_ms is not None}
    known = sources.arrival_bounds(ctx, days)
    return ",".join(
        m.index
        for m in found
        if m.start_ms is None or known.get(m.start_ms // rs.DAY_MS, w + 1) > w
    )


def first_purchases(
    ctx: Ctx, merchant_id: str, earliest: dict[int, int], before_ms: int
) -> dict[int, int]:
    """Each customer's first-ever succeeded payment: min(stored, earliest in the window,
    earliest not yet folded into the state before the window, and the raw history of any held
    range)."""
    customers = sorted(earliest)
    if not customers:
        return {}
    # The first-purchase state holds what rollup runs up to W folded in; one read gives W and
    # the holds.
    seen = sources.read_state(ctx)
    older = unfolded_before(ctx, merchant_id, before_ms, seen.watermark())
    holds = [(h.start, h.end) for h in seen.holds if h.start < before_ms]
    replayed = held_history(ctx, merchant_id, holds, before_ms)
    stored = sources.first_purchases(ctx, [(merchant_id, c) for c in customers])
    out: dict[int, int] = {}
    for c in customers:
        first = stored[(merchant_id, c)].first_paid_at
        if first is not None and any(a <= first < b for a, b in holds):
            first = None  # it may come from the raw data a reprocess is replacing
        seen_at = [t for t in (first, older.get(c), replayed.get(c)) if t is not None]
        out[c] = min([earliest[c], *seen_at])
    return out


def held_history(
    ctx: Ctx, merchant_id: str, holds: list[tuple[int, int]], before_ms: int
) -> dict[int, int]:
    """Earliest succeeded payment per customer in raw from the first held range's start up to
    ``before_ms``, or nothing without a hold.

    A hold (decision 0046) covers a range ``pulse reprocess`` is replacing; the first-purchase
    state is only rebuilt after the switch (decision 0210), so until then a stored first inside
    a held range may be a payment the new data no longer has, and the new data may hold an
    earlier one. Both readings are decided by raw alone: a stored first inside the hold is
    dropped, and raw from the hold's start on supplies what it stood for (nothing before the
    hold can be earlier, or the state would hold that instead)."""
    if not holds:
        return {}
    since = min(a for a, _ in holds)
    query = dsl.paid_between_query(merchant_id, since, before_ms)
    return _earliest_by_customer(ctx, query, (since, before_ms))


def customer_cells(ctx: Ctx, plan: QueryPlan) -> Cells:
    """NEW/RETURNING_CUSTOMERS of every (group, bucket), group total and report total."""
    whole = plan.granularity is Granularity.ALL
    histogram = None if whole else (plan.granularity, plan.timezone)
    active, earliest = active_customers(
        ctx, plan.merchant_id, (plan.start_ms, plan.end_ms), histogram, plan.group_by, plan.filters
    )
    firsts = first_purchases(ctx, plan.merchant_id, earliest, plan.start_ms)
    index = {start: i for i, start in enumerate(plan.boundaries[:-1])}
    out: Cells = {}
    per_group: dict[GroupKey, set[int]] = {}
    for (group, bucket), customers in active.items():
        i = 0 if bucket is None else index.get(bucket, -1)
        if i < 0:
            raise UnexpectedAnswer(f"engine bucket {bucket} is not a planned boundary")
        span_start = max(plan.boundaries[i], plan.start_ms)
        out[(group, i)] = _classified(customers, firsts, span_start)
        per_group.setdefault(group, set()).update(customers)
    everyone: set[int] = set()
    for group, customers in per_group.items():
        out[(group, None)] = _classified(customers, firsts, plan.start_ms)
        everyone |= customers
    out[(None, None)] = _classified(everyone, firsts, plan.start_ms)
    return out


def _classified(customers: set[int], firsts: dict[int, int], span_start: int) -> Cell:
    """Customers paying in a span: new when their first lies in it, returning before it."""
    new = sum(1 for c in customers if firsts[c] >= span_start)
    return Cell(new_customers=new, returning_customers=len(customers) - new)


# --- cohorts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CohortPlan:
    """A validated cohorts request: the cohort starts and every period boundary after them."""

    merchant_id: str
    granularity: Granularity
    timezone: str
    periods: int
    starts: tuple[int, ...]  # period starts from the first cohort on, through the last's end
    cohorts: int  # the first ``cohorts`` entries of ``starts`` start a cohort
    now_ms: int

    @property
    def window(self) -> tuple[int, int]:
        """[first cohort start, end of the last cohort's last period)."""
        return self.starts[0], self.starts[-1]


def cohort_plan(
    merchant_id: str,
    start_ms: int,
    end_ms: int,
    granularity: Granularity,
    timezone: str,
    periods: int,
    now_ms: int,
    max_range_days: int,
    max_periods: int,
    max_cohorts: int,
) -> CohortPlan:
    """Validate a cohorts request and lay out its periods (pure: also used for pricing)."""
    tz = zone(timezone)
    if granularity not in COHORT_GRANULARITIES:
        raise BadInput("cohorts: granularity must be DAY, WEEK or MONTH")
    if end_ms <= start_ms:
        raise BadInput("range.end must be after range.start")
    if end_ms - start_ms > max_range_days * rs.DAY_MS:
        raise BadInput(f"the range is longer than {max_range_days} days")
    if not 1 <= periods <= max_periods:
        raise BadInput(f"periods must be between 1 and {max_periods}")
    too_many = BadInput(
        f"more than {max_cohorts} cohorts; use a shorter range or a coarser granularity"
    )
    try:
        bounds = boundaries(start_ms, end_ms, granularity, tz, max_cohorts + 2)
    except BadInput:
        raise too_many from None
    cohort_starts = [b for b in bounds[:-1] if start_ms <= b < end_ms]
    if len(cohort_starts) > max_cohorts:
        raise too_many
    starts = list(cohort_starts)
    if starts:
        starts += _periods_after(starts[-1], periods, granularity, tz)
    return CohortPlan(
        merchant_id, granularity, timezone, periods, tuple(starts), len(cohort_starts), now_ms
    )


def plan_request(
    settings: Settings,
    merchant_id: str,
    start: datetime,
    end: datetime,
    granularity: Granularity,
    timezone: str,
    periods: int,
    now_ms: int,
) -> CohortPlan:
    """The validated plan of a ``cohorts`` field's arguments (resolver and pricing)."""
    zone(timezone)
    return cohort_plan(
        merchant_id,
        to_ms(start, timezone),
        to_ms(end, timezone),
        granularity,
        timezone,
        periods,
        now_ms,
        settings.max_range_days,
        settings.cohort_max_periods,
        settings.cohort_max_cohorts,
    )


def _periods_after(first: int, count: int, gran: Granularity, tz: ZoneInfo) -> list[int]:
    """The next ``count`` period starts after the period starting at ``first``."""
    out, current = [], first
    for _ in range(count):
        current = boundaries(current, current + 1, gran, tz, 2)[1]
        out.append(current)
    return out


def cohort_points(plan: CohortPlan) -> int:
    """What a cohort matrix costs in the request budget: cohorts x periods values."""
    return max(1, plan.cohorts * plan.periods)


@dataclass(frozen=True)
class CohortRow:
    start_ms: int
    customers: int
    retained: list[float | None]


def cohorts(ctx: Ctx, plan: CohortPlan) -> list[CohortRow]:
    """The retention matrix: per cohort its size and the share active in each period."""
    if not plan.cohorts:
        return []
    active, earliest = active_customers(
        ctx, plan.merchant_id, plan.window, (plan.granularity, plan.timezone)
    )
    firsts = first_purchases(ctx, plan.merchant_id, earliest, plan.window[0])
    periods_of: dict[int, set[int]] = {}  # customer -> period indexes with a payment
    for ((), bucket), customers in active.items():
        assert bucket is not None
        p = bisect_right(plan.starts, bucket) - 1
        for c in customers:
            periods_of.setdefault(c, set()).add(p)
    members: list[list[int]] = [[] for _ in range(plan.cohorts)]
    for c, first in firsts.items():
        k = bisect_right(plan.starts, first) - 1
        if 0 <= k < plan.cohorts and first >= plan.starts[0]:
            members[k].append(c)
    return [_row(plan, k, members[k], periods_of) for k in range(plan.cohorts)]


def _row(
    plan: CohortPlan, k: int, members: list[int], periods_of: dict[int, set[int]]
) -> CohortRow:
    retained: list[float | None] = []
    for i in range(plan.periods):
        if plan.starts[k + i] > plan.now_ms or not members:
            retained.append(NOT_BEGUN)  # not begun yet, or nobody to share (empty cohort)
            continue
        back = sum(1 for c in members if k + i in periods_of.get(c, ()))
        retained.append(back / len(members))
    return CohortRow(plan.starts[k], len(members), retained)
