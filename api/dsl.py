"""Request formatting: the API's only writer of OpenSearch DSL (docs/decisions/0230).

A resolved plan (api.resolve) becomes typed requests: ``shared_requests`` (rollup sketches),
``totals_requests`` (every group's totals, for ranking), ``series_requests`` (what a report
shows, once its groups are ranked), ``late_hours_request`` and ``freshness_request`` (source
resolution's raw reads); the execution stage (api.sources) runs them. Nothing here talks to
the engine. tests/api/test_dsl_owner.py fails when another api module writes DSL.

Raw documents keep each event's fields; rollup documents are per merchant x UTC hour x
dimension combination, plus one total per merchant x hour (storage.rollup_schema), and store
absent dimension values as MISSING, so the two sources need different filters for "no value".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache, partial
from typing import Any

from api.model import (
    HOUR_MS,
    MISSING,
    Base,
    Dimension,
    Filter,
    Granularity,
    Interval,
    QueryPlan,
    ResolvedPlan,
    Source,
)
from api.timebuckets import ENGINE_INTERVAL
from pulse.settings import Settings
from storage import fx, late_events
from storage import rollup_schema as rs

Body = dict[str, Any]
GroupKey = tuple[str, ...]

TIME_FIELD = {Source.RAW: "occurred_at", Source.ROLLUPS: rs.HOUR}
PAID, FAILED, REFUND, DISPUTE = rs.RAW_PAID, rs.RAW_FAILED, rs.RAW_REFUND, rs.RAW_DISPUTE
ROLLUP_SUMS = {
    Base.EVENTS: rs.EVENTS,
    Base.PAID: rs.PAYMENTS_SUCCEEDED,
    Base.GROSS: rs.GROSS_MILLI,
    Base.FAILED: rs.PAYMENTS_FAILED,
    Base.REFUNDS: rs.REFUNDS_MILLI,
    Base.DISPUTES: rs.DISPUTES,
}


def value_clause(source: Source, dim: Dimension, value: str) -> Body:
    """Documents whose ``dim`` equals ``value`` (MISSING meaning "absent")."""
    if value == MISSING and source is Source.RAW:
        return {"bool": {"must_not": [{"exists": {"field": dim.field}}]}}
    return {"term": {dim.field: value}}


def filter_clause(source: Source, flt: Filter) -> Body:
    present = [v for v in flt.values if v != MISSING or source is Source.ROLLUPS]
    should: list[Body] = [{"terms": {flt.dimension.field: present}}] if present else []
    if MISSING in flt.values and source is Source.RAW:
        should.append(value_clause(source, flt.dimension, MISSING))
    matches = {"bool": {"should": should, "minimum_should_match": 1}}
    return {"bool": {"must_not": [matches]}} if flt.exclude else matches


def intervals_clause(field: str, intervals: tuple[Interval, ...]) -> Body:
    ranges = [
        {"range": {field: {"gte": a, "lt": b, "format": "epoch_millis"}}} for a, b in intervals
    ]
    return (
        ranges[0] if len(ranges) == 1 else {"bool": {"should": ranges, "minimum_should_match": 1}}
    )


def query(plan: QueryPlan, source: Source, intervals: tuple[Interval, ...]) -> Body:
    """The tenant-scoped, filtered, time-restricted query for one source."""
    clauses: list[Body] = [
        {"term": {"merchant_id": plan.merchant_id}},
        intervals_clause(TIME_FIELD[source], intervals),
    ]
    clauses += [filter_clause(source, f) for f in plan.filters]
    if source is Source.ROLLUPS:
        clauses.append(rollup_level(plan))
    return {"bool": {"filter": clauses}}


def rollup_level(plan: QueryPlan) -> Body:
    """Which rollup documents answer the plan: with no filter and no grouping, the one total
    document per hour; otherwise the per-combination details (never both: double counts)."""
    return rs.DETAILS_ONLY if plan.filters or plan.group_by else rs.totals_of(plan.merchant_id)


MAX_CURRENCIES = 200  # terms size for currencies: more than ISO 4217 has
CURRENCY_FIELD = "currency"  # the raw field and the rollup dimension (storage.rollup_schema)
AMOUNT = {"amt": {"sum": {"field": "amount_milli"}}}


def _currency_terms(source: Source) -> Body:
    # Raw money without a currency is named MISSING, as the rollup documents store it.
    terms: Body = {"field": CURRENCY_FIELD, "size": MAX_CURRENCIES}
    if source is Source.RAW:
        terms["missing"] = MISSING
    return {"terms": terms}


def currency_probe(source: Source) -> Body:
    """Report-level aggregations naming the currencies of the succeeded payments (``cp``) and
    of the refunded amounts (``cr``): what decides a money value's currency (api.money).
    Asked once per report, not per bucket: a single-currency merchant pays one terms
    aggregation over its money events per source (decision 0200)."""
    if source is Source.ROLLUPS:
        paid: Body = {"range": {rs.PAYMENTS_SUCCEEDED: {"gt": 0}}}
        refunded: Body = {"range": {rs.REFUNDS_MILLI: {"gt": 0}}}
    else:
        paid = PAID
        refunded = {"bool": {"filter": [REFUND, {"range": {"amount_milli": {"gt": 0}}}]}}
    names = _currency_terms(source)
    return {
        "cp": {"filter": paid, "aggs": {"c": names}},
        "cr": {"filter": refunded, "aggs": {"c": names}},
    }


def _by_currency_and_day(source: Source, sums: Body) -> Body:
    """``sums`` per currency and per UTC day (what api.fx converts, each at its day's rate)."""
    day = {"field": TIME_FIELD[source], "calendar_interval": "1d", "min_doc_count": 1}
    return {**_currency_terms(source), "aggs": {"d": {"date_histogram": day, "aggs": sums}}}


def base_aggs(
    bases: frozenset[Base],
    source: Source,
    hashes_cap: int,
    threshold: int,
    convert: bool = False,
) -> Body:
    """Sub-aggregations giving each Base for one bucket. ``hashes_cap`` > 0 asks raw for the
    customers' hashes (to merge with rollup sketches) instead of a cardinality estimate.
    ``convert`` also breaks the money down by currency and UTC day (reportingCurrency)."""
    money = bases & {Base.GROSS, Base.REFUNDS}
    if source is Source.ROLLUPS:
        out = {b.value: {"sum": {"field": f}} for b, f in ROLLUP_SUMS.items() if b in bases}
        if convert and money:
            sums = {b.value: {"sum": {"field": ROLLUP_SUMS[b]}} for b in money}
            out["fx"] = _by_currency_and_day(source, sums)
        return out
    aggs: Body = {}
    if bases & {Base.PAID, Base.GROSS}:
        paid: Body = {"filter": PAID}
        if Base.GROSS in bases:
            paid["aggs"] = dict(AMOUNT)
            if convert:
                paid["aggs"]["fx"] = _by_currency_and_day(source, AMOUNT)
        aggs["paid"] = paid
    if Base.FAILED in bases:
        aggs["failed"] = {"filter": FAILED}
    if Base.REFUNDS in bases:
        aggs["refunds"] = {"filter": REFUND, "aggs": dict(AMOUNT)}
        if convert:
            aggs["refunds"]["aggs"]["fx"] = _by_currency_and_day(source, AMOUNT)
    if Base.DISPUTES in bases:
        aggs["disputes"] = {"filter": DISPUTE}
    if Base.CUSTOMERS in bases:
        card = {"field": "customer_id", "precision_threshold": threshold}
        aggs["cust"] = {"cardinality": card}
        if hashes_cap:
            aggs["cust_h"] = {"terms": {"field": "customer_hash", "size": hashes_cap}}
    return aggs


def histogram(plan: QueryPlan, source: Source, sub: Body) -> Body:
    return {
        "date_histogram": {
            "field": TIME_FIELD[source],
            "calendar_interval": ENGINE_INTERVAL[plan.granularity],
            "time_zone": plan.timezone,
            "min_doc_count": 1,
        },
        "aggs": sub,
    }


def group_query(source: Source, dims: tuple[Dimension, ...], key: GroupKey) -> Body:
    return {
        "bool": {"filter": [value_clause(source, d, v) for d, v in zip(dims, key, strict=True)]}
    }


def series_body(
    plan: QueryPlan,
    source: Source,
    intervals: tuple[Interval, ...],
    groups: tuple[GroupKey, ...] | None,
    hashes_cap: int = 0,
    threshold: int = 3000,
) -> Body:
    """Totals, and per bucket (per chosen group when grouped) the Bases of the plan."""
    base = base_aggs(plan.bases, source, hashes_cap, threshold, plan.converts)
    cell = dict(base)
    if plan.granularity is not Granularity.ALL:
        cell["t"] = histogram(plan, source, base)
    probe = currency_probe(source) if plan.money and not plan.converts else {}
    if groups is None:
        # Ungrouped: the top level is the report total; raw's event count is the exact hit
        # total (a match-all filter bucket would cost the engine a second pass).
        return {
            "size": 0,
            "track_total_hits": source is Source.RAW,
            "query": query(plan, source, intervals),
            "aggs": {**cell, **probe},
        }
    # Grouped: the report total (all groups, not just the chosen) sits in a match-all filter
    # bucket so raw totals get a doc_count.
    aggs: Body = {"all": {"filter": {"match_all": {}}, "aggs": {**base, **probe}}}
    if groups:
        filters = {str(i): group_query(source, plan.group_by, k) for i, k in enumerate(groups)}
        aggs["g"] = {"filters": {"filters": filters}, "aggs": cell}
    return {
        "size": 0,
        "track_total_hits": False,
        "query": query(plan, source, intervals),
        "aggs": aggs,
    }


def groups_body(
    plan: QueryPlan,
    source: Source,
    intervals: tuple[Interval, ...],
    page: int,
    after: dict[str, Any] | None,
    threshold: int = 3000,
    hashes_cap: int = 0,
) -> Body:
    """One page of every group's totals (for ranking by the first metric)."""
    sources = [
        {f"d{i}": {"terms": {"field": d.field, "missing_bucket": source is Source.RAW}}}
        for i, d in enumerate(plan.group_by)
    ]
    composite: Body = {"size": page, "sources": sources}
    if after:
        composite["after"] = after
    sub = base_aggs(plan.bases, source, hashes_cap, threshold, plan.converts)
    return {
        "size": 0,
        "track_total_hits": False,
        "query": query(plan, source, intervals),
        "aggs": {"g": {"composite": composite, "aggs": sub}},
    }


def packs_docs(plan: QueryPlan, hours: Sequence[int], index_of: Callable[[int], str]) -> list[Body]:
    """The ``mget`` entries of the merchant's day packs holding ``hours`` (rollups.packs): one
    per UTC day, by the writer's deterministic id in the day's monthly index (``index_of``),
    no query to evaluate (decision 0049). A day without a pack had no events."""
    return _pack_entries(plan, sorted({rs.day_start(hour) for hour in hours}), index_of)


def _pack_entries(
    plan: QueryPlan, days: Sequence[int], index_of: Callable[[int], str]
) -> list[Body]:
    """``index_of`` is asked once per UTC month (it names a monthly index) and each id is
    remembered: both cost ~6 us a day, ~0.35 ms of every 30-day report otherwise. The
    entries of a (merchant, days, index_of) are remembered whole (``_entries``): a dashboard
    asks the same days again and again; callers copy the list, never change its entries."""
    return list(_entries(plan.merchant_id, tuple(days), index_of, False))


@lru_cache(maxsize=1024)
def _entries(
    merchant_id: str, days: tuple[int, ...], index_of: Callable[[int], str], bare: bool
) -> tuple[Body, ...]:
    """The ``mget`` entries of a merchant's packs of ``days`` (``bare``: without sources, for
    their versions). ``index_of`` is hashed by identity: ``api.sources.rollup_index`` gives
    the same one for the same names and generation."""
    out: list[Body] = []
    month, index = (0, 0), ""
    for day in days:
        if not month[0] <= day < month[1]:
            month, index = _month_of(day), index_of(day)
        entry: Body = {"_index": index, "_id": _pack_id(merchant_id, day)}
        if bare:
            entry["_source"] = False
        out.append(entry)
    return tuple(out)


@lru_cache(maxsize=4096)
def _month_of(day_ms: int) -> tuple[int, int]:
    """[start, end) in epoch ms of the UTC month holding ``day_ms``."""
    first = rs.month_of(day_ms)
    after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return _epoch_ms(first), _epoch_ms(after)


def _epoch_ms(day: date) -> int:
    return (day - EPOCH).days * rs.DAY_MS


EPOCH = date(1970, 1, 1)
# A pack's id is a hash of (merchant, day): remembered for the merchants and days dashboards
# ask again and again (~100 B an entry).
_pack_id = lru_cache(maxsize=65_536)(rs.pack_id)


def sketches_body(
    plan: QueryPlan, intervals: tuple[Interval, ...], page: int, after: list[Any] | None
) -> Body:
    """One page of rollup documents' customer sketches (with what places them in cells)."""
    fields = [rs.HOUR, *(d.field for d in plan.group_by), rs.CUSTOMERS_SKETCH]
    body: Body = {
        "size": page,
        "track_total_hits": False,
        "query": query(plan, Source.ROLLUPS, intervals),
        "_source": fields,
        # unmapped_type: a monthly index older than a dimension (decision 0205) sorts too.
        "sort": [
            {rs.HOUR: "asc"},
            *({d: {"order": "asc", "unmapped_type": "keyword"}} for d in rs.DIMENSIONS),
        ],
    }
    if after:
        body["search_after"] = after
    return body


# --- requests: what the execution stage (api.sources) runs -------------------------------

PAGE = 1000  # composite and search_after page size of the report reads


@dataclass(frozen=True)
class Search:
    """One search of one source, restricted to ``intervals`` (which routes it, api.engine)."""

    source: Source
    intervals: tuple[Interval, ...]
    body: Body


@dataclass(frozen=True)
class Pages:
    """A paged read of one source: ``page(after)`` is the body of the page after ``after``
    (None: the first page); the answers say when to stop."""

    source: Source
    intervals: tuple[Interval, ...]
    page: Callable[[Any], Body]


@dataclass(frozen=True)
class Packs:
    """The merchant's day packs holding the hours of ``intervals`` (rollups.packs), by id."""

    intervals: tuple[Interval, ...]
    docs: tuple[Body, ...]


@dataclass(frozen=True)
class RawSearch:
    """A search of the served raw events (``span``: the occurred_at range it can match)."""

    body: Body
    span: Interval | None


@dataclass(frozen=True)
class SharedRequests:
    """Reads whose cells both ranking and the series use: the rollup documents' customer
    sketches (stitched reports) and whether NEW/RETURNING_CUSTOMERS are asked (api.customers
    formats those reads itself from this module's ``active_customers_*`` functions)."""

    resolved: ResolvedPlan
    sketches: tuple[Pages, ...]
    firsts: bool


@dataclass(frozen=True)
class TotalsRequests:
    """Every group's totals from each source, for ranking (composite pages)."""

    resolved: ResolvedPlan
    pages: tuple[Pages, ...]


@dataclass(frozen=True)
class SeriesRequests:
    """What the report shows: per source the total and every bucket (of each chosen group:
    ``groups``, None when the report is not grouped), in the order of ``resolved.parts``."""

    resolved: ResolvedPlan
    groups: tuple[GroupKey, ...] | None
    reads: tuple[Search | Packs, ...]


def hashes_cap(resolved: ResolvedPlan, settings: Settings) -> int:
    """How many customer hashes raw lists per cell to merge with rollup sketches (0: none)."""
    return settings.stitch_customer_cap if resolved.stitched else 0


def shared_requests(resolved: ResolvedPlan) -> SharedRequests:
    plan, rollups = resolved.plan, resolved.split.rollups
    sketches = (
        (Pages(Source.ROLLUPS, rollups, partial(sketches_body, plan, rollups, PAGE)),)
        if resolved.stitched
        else ()
    )
    return SharedRequests(resolved, sketches, Base.FIRSTS in plan.bases)


def totals_requests(resolved: ResolvedPlan, settings: Settings) -> TotalsRequests:
    """Composite pages of every group's totals per source (none when not grouped)."""
    plan = resolved.plan
    if not plan.group_by:
        return TotalsRequests(resolved, ())
    threshold, cap = settings.uniques_precision_threshold, hashes_cap(resolved, settings)
    pages = tuple(
        Pages(source, iv, _groups_page(plan, source, iv, threshold, cap))
        for source, iv in resolved.parts
    )
    return TotalsRequests(resolved, pages)


def _groups_page(
    plan: QueryPlan, source: Source, intervals: tuple[Interval, ...], threshold: int, cap: int
) -> Callable[[Any], Body]:
    def page(after: Any) -> Body:
        return groups_body(plan, source, intervals, PAGE, after, threshold, cap)

    return page


def series_requests(
    resolved: ResolvedPlan,
    groups: tuple[GroupKey, ...] | None,
    settings: Settings,
    index_of: Callable[[int], str],
) -> SeriesRequests:
    """One read per source: rollups without filter or grouping come from the day packs
    (``index_of``: the monthly rollup index of a day), everything else is one search."""
    plan = resolved.plan
    threshold, cap = settings.uniques_precision_threshold, hashes_cap(resolved, settings)
    reads: list[Search | Packs] = []
    for source, iv in resolved.parts:
        if source is Source.ROLLUPS and reads_packs(plan):
            reads.append(packs_request(plan, iv, index_of))
        else:
            reads.append(Search(source, iv, series_body(plan, source, iv, groups, cap, threshold)))
    return SeriesRequests(resolved, groups, tuple(reads))


def reads_packs(plan: QueryPlan) -> bool:
    """Whether the rollup hours of the plan are read from the day packs (not a search)."""
    return not plan.filters and not plan.group_by


def version_docs(plan: QueryPlan, index_of: Callable[[int], str], rates: str | None) -> list[Body]:
    """What source resolution reads with the rollup state (decision 0260): the versions
    (no sources) of the day packs of every UTC day of the range when the plan reads packs,
    and the exchange rates' version document (``rates``: its index) when the plan converts."""
    docs: list[Body] = []
    if reads_packs(plan) and plan.force_source is not Source.RAW:
        days = range(rs.day_start(plan.start_ms), plan.end_ms, rs.DAY_MS)
        docs += _entries(plan.merchant_id, tuple(days), index_of, True)
    if rates is not None and plan.converts:
        docs.append({"_index": rates, "_id": fx.VERSION_ID})
    return docs


def packs_request(
    plan: QueryPlan, intervals: tuple[Interval, ...], index_of: Callable[[int], str]
) -> Packs:
    """``packs_docs`` of the intervals' hours, found per day (not per hour): formatting runs
    before the reads start, so it stays O(days) on the report's critical path."""
    days = sorted({d for a, b in intervals for d in range(rs.day_start(a), b, rs.DAY_MS)})
    return Packs(intervals, tuple(_pack_entries(plan, days, index_of)))


def late_hours_request(merchant_id: str, hours: set[int], watermark: int) -> RawSearch:
    """Source resolution's late-event check: which of ``hours`` hold an event of the merchant
    ingested after W (storage.late_events, shared with rollups.state)."""
    start, end = min(hours), max(hours) + HOUR_MS
    return RawSearch(late_events.hours_body(merchant_id, start, end, watermark), (start, end))


def freshness_request(merchant_id: str, watermark: int | None) -> RawSearch:
    return RawSearch(late_events.freshness_body(merchant_id, watermark), None)


# --- NEW/RETURNING_CUSTOMERS and cohorts (api.customers) -----------------------------------


def paying_customers_query(
    merchant_id: str, span: Interval, filters: Sequence[Filter] = ()
) -> Body:
    """Succeeded payments with a customer in [start, end), matching every filter."""
    start, end = span
    clauses: list[Body] = [
        {"term": {"merchant_id": merchant_id}},
        {"range": {"occurred_at": {"gte": start, "lt": end, "format": "epoch_millis"}}},
        rs.RAW_PAID,
        {"exists": {"field": "customer_id"}},
        *(filter_clause(Source.RAW, f) for f in filters),
    ]
    return {"bool": {"filter": clauses}}


def paying_customers_keys(
    group_by: Sequence[Dimension], histogram: tuple[Granularity, str] | None
) -> list[Body]:
    """Composite sources listing each (group ``d<i>``, bucket ``b``, customer ``c``) once."""
    sources: list[Body] = [
        {f"d{i}": {"terms": {"field": d.field, "missing_bucket": True}}}
        for i, d in enumerate(group_by)
    ]
    if histogram is not None:
        gran, tz_name = histogram
        interval = {"calendar_interval": ENGINE_INTERVAL[gran], "time_zone": tz_name}
        sources.append({"b": {"date_histogram": {"field": "occurred_at", **interval}}})
    sources.append({"c": {"terms": {"field": "customer_id"}}})
    return sources


def customer_key() -> list[Body]:
    """Composite sources listing each customer once."""
    return [{"c": {"terms": {"field": "customer_id"}}}]


def unfolded_payments_query(merchant_id: str, before_ms: int, watermark: int | None) -> Body:
    """Succeeded payments with a customer before ``before_ms`` that the first-purchase state
    may not hold yet: those ingested after W (all of them before any rollup run)."""
    ingested: list[Body] = []
    if watermark is not None:
        ingested.append({"range": {"ingested_at": {"gt": watermark, "format": "epoch_millis"}}})
    return _paid_with_customer(merchant_id, {"lt": before_ms}, ingested)


def paid_between_query(merchant_id: str, start_ms: int, before_ms: int) -> Body:
    """Succeeded payments with a customer in [start, before): a held range's raw history."""
    return _paid_with_customer(merchant_id, {"gte": start_ms, "lt": before_ms}, [])


def _paid_with_customer(merchant_id: str, occurred: Body, more: list[Body]) -> Body:
    """Succeeded payments of the merchant with a customer, ``occurred`` (range bounds, epoch
    ms) on ``occurred_at``, and the filters ``more``."""
    occurred_at = {"range": {"occurred_at": {**occurred, "format": "epoch_millis"}}}
    clauses = [
        {"term": {"merchant_id": merchant_id}},
        occurred_at,
        rs.RAW_PAID,
        {"exists": {"field": "customer_id"}},
    ]
    return {"bool": {"filter": clauses + more}}


def first_payments_page(
    query: Body, keys: list[Body], page: int, after: dict[str, Any] | None
) -> Body:
    """One composite page of ``keys`` with each key's earliest ``occurred_at`` (``first``)."""
    composite: Body = {"size": page, "sources": keys}
    if after:
        composite["after"] = after
    return {
        "size": 0,
        "track_total_hits": False,
        "query": query,
        "aggs": {
            "k": {"composite": composite, "aggs": {"first": {"min": {"field": "occurred_at"}}}}
        },
    }
