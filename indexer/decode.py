"""Step 1: decode and validate one message, before any batching (arroyo's per-message step).

Every message becomes either an ``IndexItem`` or a ``DeadLetter``; nothing raises for bad
input, so one poison pill can never stall its partition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from indexer.model import DAY_MS, DeadLetter, IndexItem, Origin
from ingest.contract import Document, Event, Rejection, parse_document, parse_message
from pulse.clock import now_ms as now_ms
from pulse.settings import Settings

# A version of the document mapping: (event, ingested_at_ms) -> raw document.
Mapping = Callable[[Event, int], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Bounds:
    """How far from now an event's occurred_at may lie (both ends configurable)."""

    max_future_ms: int
    max_age_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Bounds:
        return cls(settings.max_future_skew_s * 1000, settings.raw_retention_days * DAY_MS)

    def check(self, occurred_at_ms: int, now_ms: int) -> tuple[str, str] | None:
        """A (reason, detail) when out of bounds, else None."""
        if occurred_at_ms > now_ms + self.max_future_ms:
            ahead_s = (occurred_at_ms - now_ms) // 1000
            return "future:occurred_at", f"occurred_at is {ahead_s}s ahead of the indexer clock"
        if occurred_at_ms < now_ms - self.max_age_ms:
            days = (now_ms - occurred_at_ms) // DAY_MS
            return "expired:occurred_at", f"occurred_at is {days} days old, beyond raw retention"
        return None


def decode(
    origin: Origin, bounds: Bounds, now_ms: int, mapping: Mapping | None = None
) -> IndexItem | DeadLetter:
    """Turn one message into an indexable item or a dead letter with a reason.

    ``mapping`` pins another version of the document mapping than ``Event.to_doc`` (a
    reprocessing run replaying a known processing version); validation and bounds stay."""
    parsed = parse_document(origin.value) if mapping is None else parse_message(origin.value)
    if isinstance(parsed, Rejection):
        return DeadLetter(origin, "validate", parsed.reason, parsed.detail)
    doc_id, occurred_at_ms = parsed.doc_id, parsed.occurred_at_ms
    out_of_bounds = bounds.check(occurred_at_ms, now_ms)
    if out_of_bounds is not None:
        return DeadLetter(origin, "bounds", *out_of_bounds)
    # Where the message lies in Kafka: a reprocessing run fetches a range's later arrivals by
    # these instead of scanning the log (docs/decisions/0131).
    if isinstance(parsed, Document):  # the live indexer: the document straight from the bytes
        body = parsed.body(origin.partition, origin.offset)
    else:
        assert mapping is not None
        doc = mapping(parsed, 0)
        doc.pop("ingested_at", None)  # stamped right before each bulk attempt, see stamp()
        doc["kafka_partition"], doc["kafka_offset"] = origin.partition, origin.offset
        body = orjson.dumps(doc)
    return IndexItem(origin, doc_id, occurred_at_ms // DAY_MS, body)


def stamp(body: bytes, ingested_at_ms: int) -> bytes:
    """The document with ``ingested_at`` added: a splice into the closing brace, since every
    body is an orjson-encoded non-empty object. Done per attempt so a retried document carries
    the time it actually became durable (the rollup job's freshness bound relies on it)."""
    return b'%s,"ingested_at":%d}' % (body[:-1], ingested_at_ms)
