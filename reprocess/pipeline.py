"""What a replay's decode step needs beyond the live one: the run's days and the mapping.

A replay decodes with the live indexer's own step (``indexer.steps.decode`` over
``indexer.decode.decode``: contract validation, time bounds, the document mapping), so it
runs the code that is deployed; ``event_day`` lets it skip other days' messages without the
full decode. Its chain of steps is ``reprocess.chain``. ``Processing`` pins
another version of the document mapping (the code a bug lives in): tests use it to build a
generation with a known bug.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from indexer.decode import Bounds, Mapping
from indexer.model import DAY_MS, DeadLetter, IndexItem, Origin
from indexer.steps.decode import entry_of
from ingest.contract import MAX_MESSAGE_BYTES, Event, InvalidEvent, parse_instant

Processing = Mapping


def current_processing(event: Event, ingested_at_ms: int) -> dict[str, Any]:
    """Today's processing code: the event contract's own document mapping."""
    return event.to_doc(ingested_at_ms)


class _When(msgspec.Struct):
    """The one field a replay needs to skip a message of another day."""

    occurred_at: str | int | None = None


_WHEN = msgspec.json.Decoder(_When)


def event_day(value: bytes | None) -> int | None:
    """The UTC day number of a message's ``occurred_at``, read without decoding the rest
    (msgspec into a one-field struct: other fields are skipped, not built); None when it
    cannot be read that way (the full decode then decides). Only messages with exactly one
    ``"occurred_at"`` key are read, so a duplicated key cannot make this disagree with the
    full decode's (last-wins) value; the day is the one ``indexer.decode`` computes."""
    if not value or len(value) > MAX_MESSAGE_BYTES or value.count(b'"occurred_at"') != 1:
        return None
    try:
        when = _WHEN.decode(value).occurred_at
        if when is None:
            return None
        return parse_instant(when, "occurred_at") // DAY_MS
    except (msgspec.DecodeError, InvalidEvent):
        return None


class Record(Protocol):
    """What we use of a kafka-python ConsumerRecord (``Origin.of`` reads the rest)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes


@dataclass
class Decoded:
    items: list[IndexItem] = field(default_factory=list)
    invalid: int = 0
    outside: int = 0  # valid events of days outside the run's range


def decode_records(
    records: Iterable[Record],
    keep_day: Callable[[int], bool],
    bounds: Bounds,
    now_ms: int,
    processing: Processing | None = None,
) -> Decoded:
    """Decode, validate and map records with the decode step the replay's chain uses
    (``indexer.steps.decode.entry_of``); ``processing`` pins another mapping version.
    ``keep_day`` gets the UTC day number."""
    out = Decoded()
    for record in records:
        entry = entry_of(Origin.of(record), bounds, now_ms, processing, keep_day, event_day)
        if isinstance(entry, IndexItem):
            out.items.append(entry)
        elif isinstance(entry, DeadLetter):
            out.invalid += 1  # already dead-lettered by the live indexer; never re-sent
        else:
            out.outside += 1
    return out
