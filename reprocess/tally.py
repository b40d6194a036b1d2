"""Per merchant and UTC day: events, succeeded payments, gross and refunds (integer milli).

The same figures come from two sides: what the replay read from Kafka (``Tally.add``) and what
a generation holds in the engine (``engine_tally``, one composite aggregation per day). The
verification compares them exactly; the old generation is compared to show the bug's effect.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import OpenSearch

# Position of each figure in a row.
EVENTS, PAYMENTS, GROSS_MILLI, REFUNDS_MILLI = range(4)
FIGURES = ("events", "payments", "gross_milli", "refunds_milli")
Row = list[int]


def row_of(doc: Mapping[str, Any]) -> Row:
    """One raw document's contribution, by DESIGN.md's metric semantics."""
    kind, amount = doc.get("event_type"), int(doc.get("amount_milli") or 0)
    succeeded = kind == "payment" and doc.get("status") == "succeeded"
    return [1, int(succeeded), amount if succeeded else 0, amount if kind == "refund" else 0]


@dataclass
class Tally:
    """day ("YYYY.MM.DD") -> merchant -> row. JSON-friendly, so run states can store it."""

    days: dict[str, dict[str, Row]] = field(default_factory=dict)

    def add(self, day: str, merchant: str, row: Row) -> None:
        current = self.days.setdefault(day, {}).setdefault(merchant, [0, 0, 0, 0])
        for i, value in enumerate(row):
            current[i] += value

    def merge(self, other: Tally) -> None:
        for day, merchants in other.days.items():
            for merchant, row in merchants.items():
                self.add(day, merchant, row)

    def day_total(self, day: str) -> Row:
        total = [0, 0, 0, 0]
        for row in self.days.get(day, {}).values():
            total = [a + b for a, b in zip(total, row, strict=True)]
        return total

    def to_json(self) -> dict[str, dict[str, Row]]:
        return self.days

    @classmethod
    def from_json(cls, data: Mapping[str, Mapping[str, Iterable[int]]] | None) -> Tally:
        days = {d: {m: list(r) for m, r in ms.items()} for d, ms in (data or {}).items()}
        return cls(days)


def engine_tally(
    client: OpenSearch, target: str, day: str, query: dict[str, Any] | None = None, page: int = 1000
) -> Tally:
    """Aggregate ``target`` (an index, alias or list) into a Tally for ``day``."""
    tally = Tally()
    tally.days[day] = {}
    for merchant, row in engine_rows(client, target, query, page):
        tally.add(day, merchant, row)
    return tally


def engine_rows(
    client: OpenSearch, target: str, query: dict[str, Any] | None = None, page: int = 1000
) -> Iterator[tuple[str, Row]]:
    """(merchant, row) of ``target``, one per merchant in ascending merchant order, a page
    of buckets at a time: memory stays at one page however many merchants there are.

    Composite over merchant x event_type x status with a sum: no scripts, no filter
    aggregations, so it runs on every engine we support; paginated with ``after_key``. A
    merchant's buckets are consecutive (merchant is the first source), possibly across pages.
    """
    after: dict[str, Any] | None = None
    current: str | None = None
    acc: Row = [0, 0, 0, 0]
    while True:
        result = client.search(
            index=target,
            body=_composite_body(page, after, query),
            ignore_unavailable=True,
            allow_no_indices=True,
        )
        agg = result.get("aggregations", {}).get("by", {})
        for bucket in agg.get("buckets", []):
            key, n = bucket["key"], bucket["doc_count"]
            amount = round(bucket["amount"]["value"] or 0)
            succeeded = key["type"] == "payment" and key["status"] == "succeeded"
            refund = key["type"] == "refund"
            row = [n, n if succeeded else 0, amount if succeeded else 0, amount if refund else 0]
            merchant = key["merchant"]
            if merchant != current:
                if current is not None:
                    yield current, acc
                current, acc = merchant, [0, 0, 0, 0]
            acc = [a + b for a, b in zip(acc, row, strict=True)]
        after = agg.get("after_key")
        if not agg.get("buckets") or after is None:
            if current is not None:
                yield current, acc
            return


def _composite_body(
    page: int, after: dict[str, Any] | None, query: dict[str, Any] | None
) -> dict[str, Any]:
    sources = [
        {"merchant": {"terms": {"field": "merchant_id"}}},
        {"type": {"terms": {"field": "event_type"}}},
        {"status": {"terms": {"field": "status", "missing_bucket": True}}},
    ]
    composite: dict[str, Any] = {"size": page, "sources": sources}
    if after is not None:
        composite["after"] = after
    aggs = {"by": {"composite": composite, "aggs": {"amount": {"sum": {"field": "amount_milli"}}}}}
    body = {"size": 0, "track_total_hits": False, "aggs": aggs}
    if query is not None:
        body["query"] = query
    return body


@dataclass(frozen=True)
class Difference:
    day: str
    merchant: str
    expected: Row
    actual: Row


def differences(expected: Tally, actual: Tally, days: Iterable[str]) -> list[Difference]:
    """Every (day, merchant) whose rows differ; a side without the merchant counts as zeros."""
    out = []
    for day in days:
        left, right = expected.days.get(day, {}), actual.days.get(day, {})
        for merchant in sorted(set(left) | set(right)):
            a, b = left.get(merchant, [0, 0, 0, 0]), right.get(merchant, [0, 0, 0, 0])
            if a != b:
                out.append(Difference(day, merchant, a, b))
    return out
