"""The range's later arrivals, found in the serving generation and read by exact offset.

A replay reads Kafka sequentially only over the range's arrival window (docs/decisions/0131):
from ``offsets_for_times(first day - lateness)`` up to, per partition, the first message
stamped at or after ``range end + reprocess_late_window_s`` (its ``stop``; the head when
planned if no such message comes first). An event of the range appended at or after ``stop``
was written by the live indexer into the generation serving its day, with the Kafka position
it came from (``kafka_partition``, ``kafka_offset``: stamped by ``indexer.decode``). So
instead of scanning the log from ``stop`` to the head, the replay asks the serving generation
of each day for the positions at or after ``stop`` and fetches exactly those messages, which
then go through the same decode -> select -> checkpoint -> write steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from opensearchpy import OpenSearch

from pulse.naming import Names
from reprocess import generations as gens
from reprocess.pipeline import Record

PARTITION, OFFSET = "kafka_partition", "kafka_offset"
Positions = dict[int, list[int]]  # partition -> sorted offsets
PAGE = 5000
POLL_MS = 500


@dataclass(frozen=True)
class Window:
    """Which positions a search returns: at or after ``floors`` (per partition, the
    sequential read's stop); of those, only positions at or after ``after`` (per partition)
    or ingested at or after ``since_ms``; and, if set, only ingested before ``until_ms``."""

    floors: Mapping[str, int]
    after: Mapping[str, int] | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def query(self) -> dict[str, Any]:
        beyond = [_at_or_after(p, o) for p, o in self.floors.items()]
        filters: list[dict[str, Any]] = [_any(beyond)]
        narrower: list[dict[str, Any]] = []
        if self.after is not None:
            narrower += [_at_or_after(p, o) for p, o in self.after.items()]
        if self.since_ms is not None:
            narrower.append({"range": {"ingested_at": {"gte": self.since_ms}}})
        if narrower:
            filters.append(_any(narrower))
        if self.until_ms is not None:
            filters.append({"range": {"ingested_at": {"lt": self.until_ms}}})
        return {"bool": {"filter": filters}}


def _at_or_after(partition: str, offset: int) -> dict[str, Any]:
    return {
        "bool": {
            "filter": [
                {"term": {PARTITION: int(partition)}},
                {"range": {OFFSET: {"gte": offset}}},
            ]
        }
    }


def _any(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    return {"bool": {"should": clauses, "minimum_should_match": 1}}


def serving_indices(client: OpenSearch, names: Names, generation: str, day: date) -> list[str]:
    """The concrete indices of ``day`` in ``generation`` (rollovers included)."""
    return gens.generation_indices(client, names, generation, day)


def positions(client: OpenSearch, indices: list[str], window: Window) -> Positions:
    """Distinct (partition, offset) of the documents of ``indices`` inside ``window``, sorted.

    A composite aggregation (paged with ``after_key``), refreshed first so every document
    acknowledged before the call is seen."""
    out: Positions = {}
    if not indices:
        return out
    target = ",".join(indices)
    client.indices.refresh(index=target, ignore_unavailable=True)
    sources = [{"p": {"terms": {"field": PARTITION}}}, {"o": {"terms": {"field": OFFSET}}}]
    after: dict[str, Any] | None = None
    while True:
        composite: dict[str, Any] = {"size": PAGE, "sources": sources}
        if after is not None:
            composite["after"] = after
        body = {
            "size": 0,
            "track_total_hits": False,
            "query": window.query(),
            "aggs": {"at": {"composite": composite}},
        }
        result = client.search(
            index=target, body=body, ignore_unavailable=True, allow_no_indices=True
        )
        agg = result.get("aggregations", {}).get("at", {})
        buckets = agg.get("buckets", [])
        for bucket in buckets:
            out.setdefault(int(bucket["key"]["p"]), []).append(int(bucket["key"]["o"]))
        after = agg.get("after_key")
        if not buckets or after is None:
            break
    return {p: sorted(set(o)) for p, o in out.items()}


def merge(into: Positions, more: Positions) -> Positions:
    for p, offsets in more.items():
        into[p] = sorted({*into.get(p, []), *offsets})
    return into


def missing_positions(client: OpenSearch, indices: list[str], ingested_from_ms: int) -> int:
    """Documents of ``indices`` ingested at or after ``ingested_from_ms`` that carry no Kafka
    position (written before positions were stamped): the targeted read cannot find them."""
    if not indices:
        return 0
    body = {
        "query": {
            "bool": {
                "filter": [{"range": {"ingested_at": {"gte": ingested_from_ms}}}],
                "must_not": [{"exists": {"field": OFFSET}}],
            }
        }
    }
    target = ",".join(indices)
    return int(
        client.count(index=target, body=body, ignore_unavailable=True, allow_no_indices=True)[
            "count"
        ]
    )


# Positions at most this far apart are read in one sequential stretch, not one seek each: a
# fetch returns whole record batches anyway, and a seek costs a fetch round trip. The demo's
# history (a week sent at start: one day's events about one message in five) took > 12
# minutes for 7,092 positions with a seek per run of consecutive offsets (docs/benchmarks.md).
MAX_GAP = 32


def runs_of(offsets: list[int], max_gap: int = 1) -> Iterator[tuple[int, int]]:
    """Stretches of sorted ``offsets`` as (first, last): consecutive ones, or with gaps of at
    most ``max_gap`` between neighbours."""
    if not offsets:
        return
    first = last = offsets[0]
    for o in offsets[1:]:
        if o - last > max_gap:
            yield first, last
            first = o
        last = o
    yield first, last


def read_positions(
    consumer: KafkaConsumer, topic: str, wanted: Positions, batch: int
) -> Iterator[tuple[list[Record], int]]:
    """The records at exactly ``wanted``, partition by partition in offset order, in lists
    of up to ``batch``; each with how many records Kafka handed over to get them (what a
    targeted read costs: a fetch returns whole record batches). Positions at most
    ``MAX_GAP`` apart are read as one stretch (one seek), the others seeked to.

    One partition is assigned at a time, so a seek fetches only what it asks for."""
    out: list[Record] = []
    fetched = 0
    for partition in sorted(wanted):
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        exact = set(wanted[partition])
        for first, last in runs_of(wanted[partition], MAX_GAP):
            consumer.seek(tp, first)
            while consumer.position(tp) <= last:
                polled = consumer.poll(timeout_ms=POLL_MS, max_records=last - first + 1)
                records = polled.get(tp, [])
                fetched += len(records)
                out += [r for r in records if r.offset <= last and r.offset in exact]
                if not records and consumer.position(tp) <= last:
                    end = consumer.end_offsets([tp])[tp]
                    if end <= consumer.position(tp):
                        break  # deleted by retention or never there: nothing more to get
                if len(out) >= batch:
                    yield out, fetched
                    out, fetched = [], 0
    if out or fetched:
        yield out, fetched
