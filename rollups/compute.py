"""Reading raw events back as rollup buckets: composite aggregations with ``after_key`` paging.

Two questions are asked of the raw events behind the read alias (what the API serves):

1. Which (merchant, UTC hour) pairs changed? A composite over ``merchant_id`` and the hour of
   ``occurred_at``, restricted by INGEST time (``ingested_at`` in (after, through]). An event
   arriving days late lives in an old day index, so the pattern spans every raw day.
2. What do those pairs hold? One composite over merchant, hour, the eight dimensions and,
   last, ``customer_hash``, restricted to exactly the chosen pairs. Sub-aggregations give
   the counts and sums (filter + sum, no scripts); the customer source hands us each bucket's
   distinct customer hashes for its HLL sketch. We chose that over a ``terms`` sub-aggregation
   (needs a size per bucket, unbounded for big merchants) and over ``search_after`` on the
   documents (ships every event; the composite ships each (bucket, customer) once, which
   returning customers make much smaller), and it pages with a bounded response size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import OpenSearch

from pulse.clock import DAY_MS
from rollups import sketch
from storage import rollup_schema as rs
from storage import served

Pair = tuple[str, int]  # (merchant_id, UTC hour start in epoch ms)
BucketKey = tuple[str, int, rs.DimensionValues]

PAID, FAILED, REFUND, DISPUTE = rs.RAW_PAID, rs.RAW_FAILED, rs.RAW_REFUND, rs.RAW_DISPUTE
SUB_AGGS: dict[str, Any] = {
    "paid": {"filter": PAID, "aggs": {"amount": {"sum": {"field": "amount_milli"}}}},
    "failed": {"filter": FAILED},
    "refund": {"filter": REFUND, "aggs": {"amount": {"sum": {"field": "amount_milli"}}}},
    "dispute": {"filter": DISPUTE},
    "newest": {"max": {"field": "ingested_at"}},
}
CURRENCY_AT = rs.DIMENSIONS.index(rs.CURRENCY)  # where a detail key holds its currency
HOUR_SOURCE = {"date_histogram": {"field": "occurred_at", "fixed_interval": "1h"}}


@dataclass
class Bucket:
    """Additive aggregates of one (merchant, hour, dimension values)."""

    events: int = 0
    succeeded: int = 0
    failed: int = 0
    gross_milli: int = 0
    refunds_milli: int = 0
    disputes: int = 0
    newest_ingested_at: int = 0
    customers: Any = field(default_factory=sketch.new_sketch)
    # TOTAL buckets only: money per currency (storage.rollup_schema.MONEY), from the details.
    money: dict[str, rs.MoneyEntry] = field(default_factory=dict)

    def add_counts(self, other: Bucket) -> None:
        """Add another bucket's counts and sums (its sketch is the caller's to union)."""
        self.events += other.events
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.gross_milli += other.gross_milli
        self.refunds_milli += other.refunds_milli
        self.disputes += other.disputes
        self.newest_ingested_at = max(self.newest_ingested_at, other.newest_ingested_at)

    def to_doc(self, key: BucketKey, generation: str, computed_at: int) -> dict[str, Any]:
        merchant, hour, values = key
        total = values == rs.TOTAL
        dims = (rs.ALL,) * len(rs.DIMENSIONS) if total else values
        return {
            rs.MERCHANT: merchant,
            rs.HOUR: hour,
            rs.LEVEL: rs.LEVEL_TOTAL if total else rs.LEVEL_DETAIL,
            **({rs.TOTAL_OF: merchant} if total else {}),
            **dict(zip(rs.DIMENSIONS, dims, strict=True)),
            rs.EVENTS: self.events,
            rs.PAYMENTS_SUCCEEDED: self.succeeded,
            rs.PAYMENTS_FAILED: self.failed,
            rs.GROSS_MILLI: self.gross_milli,
            rs.REFUNDS_MILLI: self.refunds_milli,
            rs.DISPUTES: self.disputes,
            rs.CUSTOMERS_SKETCH: sketch.encode(self.customers),
            **({rs.MONEY: dict(sorted(self.money.items()))} if total and self.money else {}),
            rs.COMPUTED_AT: computed_at,
            rs.SOURCE_MAX_INGESTED_AT: self.newest_ingested_at,
            rs.GENERATION: generation,
        }


def composite_pages(
    client: OpenSearch, index: str, query: dict[str, Any], comp: dict[str, Any]
) -> Iterator[list[dict[str, Any]]]:
    """Every page of one composite aggregation, following ``after_key`` to the end."""
    after: dict[str, Any] | None = None
    while True:
        body_comp = {**comp, "composite": {**comp["composite"], "after": after}} if after else comp
        body = {"size": 0, "track_total_hits": False, "query": query, "aggs": {"c": body_comp}}
        result = client.search(
            index=index, body=body, allow_no_indices=True, ignore_unavailable=True
        )
        agg = (result.get("aggregations") or {}).get("c") or {}
        buckets: list[dict[str, Any]] = agg.get("buckets") or []
        if buckets:
            yield buckets
        after = agg.get("after_key")
        if not buckets or not after:
            return


def changed_pairs(
    client: OpenSearch, index: str, after_ms: int | None, through_ms: int, page: int
) -> list[Pair]:
    """Pairs of CLOSED hours (hour end <= through) that a run from W=after to W=through owes.

    That is every pair with a raw event ingested in (after, through], plus the pairs of hours
    still open at ``after`` (occurred_at >= hour_start(after)): a run skips open hours, which
    are never served from rollups, and picks them up once they close. So the open hour is
    recomputed once after it closes, not re-read on every run while it fills.
    """
    ingested: dict[str, Any] = {"lte": through_ms, "format": "epoch_millis"}
    if after_ms is None:
        query: dict[str, Any] = {"range": {"ingested_at": ingested}}
    else:
        new = {"range": {"ingested_at": {**ingested, "gt": after_ms}}}
        deferred = {
            "bool": {
                "filter": [
                    {"range": {"ingested_at": ingested}},
                    {
                        "range": {
                            "occurred_at": {
                                "gte": rs.hour_start(after_ms),
                                "format": "epoch_millis",
                            }
                        }
                    },
                ]
            }
        }
        query = {"bool": {"should": [new, deferred], "minimum_should_match": 1}}
    pairs = _pairs(client, index, query, page)
    return [(m, h) for m, h in pairs if h + rs.HOUR_MS <= through_ms]


def pairs_between(
    client: OpenSearch, index: str, start_ms: int, end_ms: int, page: int
) -> list[Pair]:
    """(merchant, hour) pairs with raw events occurring in [start, end), sorted."""
    window = {"gte": start_ms, "lt": end_ms, "format": "epoch_millis"}
    return _pairs(client, index, {"range": {"occurred_at": window}}, page)


def _pairs(client: OpenSearch, index: str, query: dict[str, Any], page: int) -> list[Pair]:
    sources = [{"m": {"terms": {"field": "merchant_id"}}}, {"h": HOUR_SOURCE}]
    comp = {"composite": {"size": page, "sources": sources}}
    found = {
        (b["key"]["m"], int(b["key"]["h"]))
        for buckets in composite_pages(client, index, query, comp)
        for b in buckets
    }
    return sorted(found, key=lambda p: (p[1], p[0]))


def pairs_query(pairs: Sequence[Pair]) -> dict[str, Any]:
    """Documents of exactly these (merchant, hour) pairs: per hour, a terms on merchants."""
    by_hour: dict[int, list[str]] = {}
    for merchant, hour in pairs:
        by_hour.setdefault(hour, []).append(merchant)
    should = [
        {
            "bool": {
                "filter": [
                    {"range": {"occurred_at": _hour_range(hour)}},
                    {"terms": {"merchant_id": sorted(merchants)}},
                ]
            }
        }
        for hour, merchants in sorted(by_hour.items())
    ]
    return {"bool": {"should": should, "minimum_should_match": 1}}


def _hour_range(hour: int) -> dict[str, Any]:
    return {"gte": hour, "lt": hour + rs.HOUR_MS, "format": "epoch_millis"}


def recompute(
    client: OpenSearch, alias: str, pairs: Sequence[Pair], page: int
) -> dict[BucketKey, Bucket]:
    """Every bucket of the given pairs, recomputed from all their raw events, plus each
    pair's total (storage.rollup_schema): one query per UTC day, sent to the alias members holding
    that day (``storage.served``; raw events live in the index of their occurred_at day)."""
    found = served.members(client, alias)
    by_day: dict[int, list[Pair]] = {}
    for pair in pairs:
        by_day.setdefault(pair[1] - pair[1] % DAY_MS, []).append(pair)
    out: dict[BucketKey, Bucket] = {}
    for day, chunk in sorted(by_day.items()):
        indices = served.covering(found, day, day + DAY_MS)
        if indices:
            _recompute_into(out, client, ",".join(indices), chunk, page)
    return with_totals(out)


def with_totals(buckets: dict[BucketKey, Bucket]) -> dict[BucketKey, Bucket]:
    """The buckets plus one TOTAL bucket per (merchant, hour) that has any."""
    totals: dict[BucketKey, Bucket] = {}
    unions: dict[BucketKey, Any] = {}
    for (merchant, hour, values), bucket in buckets.items():
        key = (merchant, hour, rs.TOTAL)
        total = totals.setdefault(key, Bucket())
        total.add_counts(bucket)
        unions.setdefault(key, sketch.new_union()).update(bucket.customers)
        if bucket.succeeded or bucket.refunds_milli:
            entry = total.money.setdefault(values[CURRENCY_AT], [0, 0, 0])
            entry[0] += bucket.succeeded
            entry[1] += bucket.gross_milli
            entry[2] += bucket.refunds_milli
    for key, union in unions.items():
        totals[key].customers = sketch.result(union)
    return {**buckets, **totals}


def _recompute_into(
    out: dict[BucketKey, Bucket], client: OpenSearch, index: str, pairs: Sequence[Pair], page: int
) -> None:
    sources: list[dict[str, Any]] = [
        {"m": {"terms": {"field": "merchant_id"}}},
        {"h": HOUR_SOURCE},
        *({d: {"terms": {"field": d, "missing_bucket": True}}} for d in rs.DIMENSIONS),
        {"c": {"terms": {"field": "customer_hash", "missing_bucket": True}}},
    ]
    comp = {"composite": {"size": page, "sources": sources}, "aggs": SUB_AGGS}
    for buckets in composite_pages(client, index, pairs_query(pairs), comp):
        for b in buckets:
            _add(out, b)


def _add(out: dict[BucketKey, Bucket], b: dict[str, Any]) -> None:
    """Fold one (bucket, customer) composite bucket into its rollup bucket."""
    key = b["key"]
    values = tuple(rs.MISSING if key[d] is None else str(key[d]) for d in rs.DIMENSIONS)
    bucket = out.setdefault((key["m"], int(key["h"]), values), Bucket())
    bucket.events += int(b["doc_count"])
    bucket.succeeded += int(b["paid"]["doc_count"])
    bucket.failed += int(b["failed"]["doc_count"])
    # Sums of integer milli come back as doubles; per bucket they stay far below 2^53.
    bucket.gross_milli += round(b["paid"]["amount"]["value"] or 0)
    bucket.refunds_milli += round(b["refund"]["amount"]["value"] or 0)
    bucket.disputes += int(b["dispute"]["doc_count"])
    newest = b["newest"]["value"]
    if newest is not None:
        bucket.newest_ingested_at = max(bucket.newest_ingested_at, int(newest))
    if key["c"] is not None:
        bucket.customers.update(int(key["c"]))
