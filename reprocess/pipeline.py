"""The processing steps a replay shares with live indexing: decode -> process -> bulk write.

By default a replay decodes with the live indexer's own step (``indexer.decode.decode``:
contract validation, time bounds, the document mapping), so it runs the code that is
deployed. ``Processing`` pins another version of the document mapping (the code a bug lives
in): tests use it to build a generation with a known bug.
Writes use ``op_type=create`` with the deterministic ``_id``: the first copy of an event
wins, a duplicate is a 409 and counts once, exactly as the tally counts it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

import orjson
from opensearchpy import OpenSearch

from indexer.decode import Bounds, decode
from indexer.model import DAY_MS, DeadLetter, Origin
from ingest.contract import Event, Rejection, parse_message
from pulse.naming import DAY_FORMAT, day_of

Processing = Callable[[Event, int], dict[str, Any]]


def current_processing(event: Event, ingested_at_ms: int) -> dict[str, Any]:
    """Today's processing code: the event contract's own document mapping."""
    return event.to_doc(ingested_at_ms)


class Record(Protocol):
    """What we use of a kafka-python ConsumerRecord (``Origin.of`` reads the rest)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Doc:
    day: date
    doc_id: str
    source: dict[str, Any]

    @property
    def day_key(self) -> str:
        return self.day.strftime(DAY_FORMAT)


@dataclass
class Parsed:
    docs: list[Doc]
    invalid: int = 0
    outside: int = 0  # valid events of days outside the run's range


def process(
    records: Iterable[Record],
    keep_day: Callable[[date], bool],
    bounds: Bounds,
    now_ms: int,
    processing: Processing | None = None,
) -> Parsed:
    """Decode, validate and process records with the live indexer's own step
    (``indexer.decode.decode``), or with a pinned ``processing`` version when one is given."""
    out = Parsed([])
    for record in records:
        doc = (
            _decoded(record, bounds, now_ms)
            if processing is None
            else _pinned(record, processing, now_ms)
        )
        if doc is None:
            out.invalid += 1  # already dead-lettered by the live indexer; never re-sent
        elif not keep_day(doc.day):
            out.outside += 1
        else:
            out.docs.append(doc)
    return out


def _decoded(record: Record, bounds: Bounds, now_ms: int) -> Doc | None:
    item = decode(Origin.of(record), bounds, now_ms)
    if isinstance(item, DeadLetter):
        return None
    source = orjson.loads(item.body)
    source["ingested_at"] = now_ms
    return Doc(day_of(item.day * DAY_MS), item.doc_id, source)


def _pinned(record: Record, processing: Processing, now_ms: int) -> Doc | None:
    parsed = parse_message(record.value)
    if isinstance(parsed, Rejection):
        return None
    return Doc(day_of(parsed.occurred_at_ms), parsed.doc_id, processing(parsed, now_ms))


class BulkError(RuntimeError):
    """Some bulk items failed for a reason other than "already exists"."""


def bulk_create(client: OpenSearch, docs: Sequence[Doc], target: Callable[[date], str]) -> int:
    """Create ``docs`` (409 = an earlier copy exists, which is success); returns items created."""
    if not docs:
        return 0
    lines: list[bytes] = []
    for doc in docs:
        action = {"create": {"_index": target(doc.day), "_id": doc.doc_id}}
        lines += [orjson.dumps(action), orjson.dumps(doc.source)]
    result = client.transport.perform_request(
        "POST",
        "/_bulk",
        body=b"\n".join(lines) + b"\n",
        params={"filter_path": "errors,items.*.status,items.*.error"},
        headers={"content-type": "application/x-ndjson"},
    )
    if not result.get("errors"):
        return len(docs)
    created, failures = 0, []
    for item in result["items"]:
        status = item["create"]["status"]
        if status in (200, 201):
            created += 1
        elif status != 409:
            failures.append(item["create"].get("error"))
    if failures:
        raise BulkError(f"{len(failures)} bulk items failed, first: {failures[0]}")
    return created


def existing_ids(
    client: OpenSearch, docs: Sequence[Doc], indices_for: Callable[[date], list[str]]
) -> set[str]:
    """Ids of ``docs`` already stored in their day's concrete indices.

    mget is real-time (no refresh needed); it is asked per backing index because a rolled-over
    day alias points at several and mget refuses such an alias.
    """
    by_day: dict[date, list[str]] = {}
    for doc in docs:
        by_day.setdefault(doc.day, []).append(doc.doc_id)
    wanted = [
        {"_index": index, "_id": doc_id}
        for day, ids in by_day.items()
        for index in indices_for(day)
        for doc_id in ids
    ]
    if not wanted:
        return set()
    result = client.mget(body={"docs": wanted}, _source=False)
    return {d["_id"] for d in result["docs"] if d.get("found")}
