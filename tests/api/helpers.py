"""Shared by the API tests: index events straight into raw indices, and a Python oracle."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from opensearchpy import OpenSearch, helpers

from ingest.contract import Event, validate
from pulse.naming import Names, day_of
from pulse.settings import Settings
from storage.templates import ensure_templates, write_target

METRICS = (
    "EVENTS",
    "PAYMENTS",
    "GROSS_SALES",
    "REFUNDS",
    "NET_SALES",
    "AVERAGE_TICKET",
    "UNIQUE_CUSTOMERS",
    "PAYMENT_SUCCESS_RATE",
    "FAILED_PAYMENTS",
    "REFUND_RATE",
    "DISPUTES",
    "DISPUTE_RATE",
)


def to_events(raws: Iterable[dict[str, Any]]) -> list[Event]:
    return [validate(dict(r)) for r in raws]


def index_events(
    client: OpenSearch, settings: Settings, names: Names, events: Iterable[Event], ingested_ms: int
) -> int:
    """Bulk-write events the way the indexer does (one doc per (merchant_id, event_id))."""
    ensure_templates(client, settings, names)
    targets: dict[Any, str] = {}
    actions = []
    for event in events:
        day = day_of(event.occurred_at_ms)
        if day not in targets:
            targets[day] = write_target(client, names, settings.generation, day)
        actions.append(
            {"_index": targets[day], "_id": event.doc_id, "_source": event.to_doc(ingested_ms)}
        )
    ok, _ = helpers.bulk(client, actions, refresh="wait_for", chunk_size=2000)
    return int(ok)


def dedupe(events: Iterable[Event]) -> list[Event]:
    seen: dict[tuple[str, str], Event] = {}
    for e in events:
        seen[(e.merchant_id, e.event_id)] = e  # the later write wins, as with the indexer's _id
    return list(seen.values())


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


class Acc:
    """Oracle accumulator for one cell."""

    def __init__(self) -> None:
        self.events = 0
        self.paid = 0
        self.gross = 0
        self.failed = 0
        self.refunds = 0
        self.disputes = 0
        self.customers: set[str] = set()

    def add(self, e: Event) -> None:
        self.events += 1
        if e.event_type == "payment" and e.status == "succeeded":
            self.paid += 1
            self.gross += e.amount_milli or 0
        if e.event_type == "payment" and e.status == "failed":
            self.failed += 1
        if e.event_type == "refund":
            self.refunds += e.amount_milli or 0
        if e.event_type == "dispute":
            self.disputes += 1
        if e.customer_id is not None:
            self.customers.add(e.customer_id)

    def value(self, metric: str) -> float | None:
        table: dict[str, float | None] = {
            "EVENTS": self.events,
            "PAYMENTS": self.paid,
            "GROSS_SALES": self.gross / 1000,
            "REFUNDS": self.refunds / 1000,
            "NET_SALES": (self.gross - self.refunds) / 1000,
            "AVERAGE_TICKET": self.gross / 1000 / self.paid if self.paid else None,
            "UNIQUE_CUSTOMERS": len(self.customers),
            "PAYMENT_SUCCESS_RATE": (
                self.paid / (self.paid + self.failed) if self.paid + self.failed else None
            ),
            "FAILED_PAYMENTS": self.failed,
            "REFUND_RATE": self.refunds / self.gross if self.gross else None,
            "DISPUTES": self.disputes,
            "DISPUTE_RATE": self.disputes / self.paid if self.paid else None,
        }
        return table[metric]


def cells_by(events: Iterable[Event], bucket_of: Any, group_of: Any) -> dict[tuple[Any, Any], Acc]:
    out: dict[tuple[Any, Any], Acc] = defaultdict(Acc)
    for e in events:
        b = bucket_of(e)
        if b is None:
            continue
        out[(group_of(e), b)].add(e)
    return out
