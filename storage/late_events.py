"""The raw reads behind the rollup watermark's promise, defined once for both readers.

W (rollups.state) says: every raw event with ``ingested_at <= W`` in an hour closed at W is in
the rollups. An event *ingested after W* is what makes an hour's rollup stale (a late event,
docs/decisions/0030) and what caps a merchant's ``rolled_up_through``. The rollup component's
own reads (``rollups.state.dirty_hours``, ``rollups.state.freshness``) and the API's source
resolution (formatted by api.dsl, run by api.engine) ask the engine the same questions with
these bodies and read the answers with these functions.
"""

from __future__ import annotations

from typing import Any

Body = dict[str, Any]
EPOCH = {"format": "epoch_millis"}


def hours_body(merchant_id: str, start_ms: int, end_ms: int, watermark: int) -> Body:
    """The UTC hours of [start, end) holding a raw event of the merchant ingested after W."""
    query = {
        "bool": {
            "filter": [
                {"term": {"merchant_id": merchant_id}},
                {"range": {"occurred_at": {"gte": start_ms, "lt": end_ms, **EPOCH}}},
                {"range": {"ingested_at": {"gt": watermark, **EPOCH}}},
            ]
        }
    }
    hist = {"date_histogram": {"field": "occurred_at", "fixed_interval": "1h", "min_doc_count": 1}}
    return {"size": 0, "track_total_hits": False, "query": query, "aggs": {"h": hist}}


def hours_of(answer: dict[str, Any]) -> set[int]:
    """The hour starts an answer to ``hours_body`` found events in."""
    buckets = ((answer.get("aggregations") or {}).get("h") or {}).get("buckets") or []
    return {int(b["key"]) for b in buckets if b["doc_count"] > 0}


def freshness_body(merchant_id: str, watermark: int | None) -> Body:
    """The merchant's newest ``ingested_at``, and (with W) the earliest ``occurred_at`` of its
    events ingested after W."""
    aggs: Body = {"newest": {"max": {"field": "ingested_at"}}}
    if watermark is not None:
        late = {"range": {"ingested_at": {"gt": watermark, "format": "epoch_millis"}}}
        aggs["late"] = {"filter": late, "aggs": {"first": {"min": {"field": "occurred_at"}}}}
    return {"size": 0, "query": {"term": {"merchant_id": merchant_id}}, "aggs": aggs}


def freshness_of(answer: dict[str, Any]) -> tuple[int | None, int | None]:
    """(newest ingested_at, earliest occurred_at ingested after W) of a ``freshness_body``
    answer, epoch ms or None."""
    found = answer.get("aggregations") or {}
    newest = (found.get("newest") or {}).get("value")
    first_late = ((found.get("late") or {}).get("first") or {}).get("value")
    return (
        None if newest is None else int(newest),
        None if first_late is None else int(first_late),
    )
