"""What flows between the indexer's steps: decoded items, dead letters and batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from pulse.clock import DAY_MS as DAY_MS


# Origin and IndexItem are made once per message and live for seconds in a batch: frozen
# msgspec structs, as cheap to build as the tuples they were (a frozen dataclass's __init__
# sets each field through object.__setattr__: ≈ 4x the cost, docs/decisions/0236), and
# untracked by the cyclic garbage collector (``gc=False``): they hold only strings, bytes,
# ints and tuples of those, so they can never be part of a cycle, and tens of thousands of
# them in flight made the collector's full passes cost ≈ 8 µs per event (decision 0280).
class Origin(msgspec.Struct, frozen=True, gc=False):
    """Where a message came from: enough to commit past it and to dead-letter it verbatim."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def of(cls, record: Any) -> Origin:
        """From a kafka-python ConsumerRecord; an ``Origin`` (what ``indexer.fetching`` hands
        out) is returned as it is."""
        if type(record) is Origin:
            return record
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.timestamp,
            record.key,
            record.value if record.value is not None else b"",
            tuple(record.headers or ()),
        )


class IndexItem(msgspec.Struct, frozen=True, gc=False):
    """A valid event ready for ``_bulk``: ``body`` is the JSON document without ingested_at."""

    origin: Origin
    doc_id: str
    day: int  # UTC day number (epoch ms // DAY_MS): which daily index it belongs to
    body: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message bound for events.dlq; ``stage`` says which step refused it."""

    origin: Origin
    stage: str  # validate | bounds | index | conflict | fetch (an undecodable batch)
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A message a filter left out (a replay's events of other days): nothing is written for
    it, but its offset is passed like any other (arroyo's ``FilteredPayload``)."""

    origin: Origin


Entry = IndexItem | DeadLetter | Skipped  # what the decode step hands to the batch step


@dataclass(slots=True)
class Batch:
    """Consecutive messages of one or more partitions, written and committed as a unit.

    ``offsets`` holds, per partition, the offset to commit once every item of this batch (and
    of every earlier batch) is durable: the last offset taken plus one.
    """

    seq: int
    epoch: int
    items: list[IndexItem] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=dict)
    nbytes: int = 0
    opened_at: float = 0.0

    def __len__(self) -> int:
        return len(self.items) + len(self.dead) + len(self.skipped)


@dataclass(slots=True)
class Outcome:
    """What writing a batch produced; ``done`` is False when it was abandoned (not durable)."""

    batch: Batch
    done: bool
    indexed: int = 0
    duplicates: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
