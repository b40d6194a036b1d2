"""The one formatter: a processed QueryPlan (plus the intervals a source answers) -> DSL dicts.

Nothing here talks to the engine. Raw documents keep each event's fields; rollup documents
are per merchant x UTC hour x dimension combination, plus one total per merchant x hour
(storage.rollup_schema), and store absent dimension values as MISSING, so the two sources need
different filters for "no value".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from api.model import MISSING, Base, Dimension, Filter, Granularity, Interval, QueryPlan, Source
from api.timebuckets import ENGINE_INTERVAL
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
    days = sorted({rs.day_start(hour) for hour in hours})
    return [{"_index": index_of(day), "_id": rs.pack_id(plan.merchant_id, day)} for day in days]


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
