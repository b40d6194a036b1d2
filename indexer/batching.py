"""Step 2: gather decoded messages into a batch, closed by count, bytes or age."""

from __future__ import annotations

import time
from dataclasses import dataclass

from indexer.model import Batch, Entry, IndexItem, Skipped
from pulse.settings import Settings

# Bulk-line overhead per document beyond its body: the action line and two newlines.
ACTION_BYTES = 80


@dataclass(frozen=True, slots=True)
class Limits:
    max_docs: int
    max_bytes: int
    max_age_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.bulk_max_docs, settings.bulk_max_bytes, settings.bulk_max_age_ms / 1e3)


class Batcher:
    """Holds the open batch; ``take()`` hands it over when full or old enough."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._seq = 0
        self.epoch = 0
        self.open = self._new()

    def _new(self) -> Batch:
        self._seq += 1
        self._count = 0  # len(self.open), kept here: Batch.__len__ adds up three lists
        return Batch(seq=self._seq, epoch=self.epoch)

    def add(self, entry: Entry) -> None:
        batch = self.open
        if not self._count:
            batch.opened_at = time.monotonic()
        self._count += 1
        if isinstance(entry, IndexItem):
            batch.items.append(entry)
            batch.nbytes += len(entry.body) + ACTION_BYTES
        elif isinstance(entry, Skipped):
            batch.skipped.append(entry)
        else:
            batch.dead.append(entry)
        batch.offsets[entry.origin.partition] = entry.origin.offset + 1

    def full(self) -> bool:
        """Checked once per entry: a count and a size, no call into the batch."""
        return self._count >= self.limits.max_docs or self.open.nbytes >= self.limits.max_bytes

    def due(self, now: float | None = None) -> bool:
        """Full, or non-empty and older than the age limit."""
        if not self._count:
            return False
        now = time.monotonic() if now is None else now
        return self.full() or now - self.open.opened_at >= self.limits.max_age_s

    def take(self) -> Batch:
        batch, self.open = self.open, self._new()
        return batch

    def discard(self, new_epoch: int) -> None:
        """Drop the open batch (its partitions were revoked) and start a new epoch."""
        self.epoch = new_epoch
        self.open = self._new()
