"""Which decoded events a replay writes: the first copy of each event, decided before the bulk.

The run state (with the tally) is saved before a batch's bulk, so the replay must know in
advance exactly which items the bulk will create. It applies docs/decisions/0011's rule
itself: a copy is skipped when an earlier copy of its ``_id`` lies within ``window`` days of
it (its own day included), either

- stored in the engine (one realtime mget per poll: the new generation's indices of the
  range's days, the serving generation's indices of neighbouring days outside the range), or
- selected earlier and not yet confirmed durable by the writer thread (``confirmed``).

The rule is applied the same way inside a poll and across polls (the live writer is stricter
inside one batch), so the choice does not depend on where polls cut the stream: a resumed run
decides exactly as the crashed one did (copies of an event share a partition, decision 0011).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opensearchpy import OpenSearch

from indexer.model import IndexItem
from storage.copies import stored_copies
from storage.targets import day_of_index

IndicesFor = Callable[[int], list[str]]  # day number -> concrete indices to look in


class FirstCopies:
    def __init__(self, client: OpenSearch, window: int, indices_for: IndicesFor) -> None:
        self.client = client
        self.window = window
        self.indices_for = indices_for
        self._unconfirmed: dict[str, list[int]] = {}  # doc_id -> days selected, not durable

    def select(self, items: Iterable[IndexItem]) -> list[IndexItem]:
        """The items to write, in order; each counts as unconfirmed until ``confirmed``."""
        items = list(items)
        stored = self._stored(items)
        chosen: list[IndexItem] = []
        for item in items:
            earlier = (*stored.get(item.doc_id, ()), *self._unconfirmed.get(item.doc_id, ()))
            if any(abs(day - item.day) <= self.window for day in earlier):
                continue
            self._unconfirmed.setdefault(item.doc_id, []).append(item.day)
            chosen.append(item)
        return chosen

    def confirmed(self, items: Iterable[IndexItem]) -> None:
        """The writer finished these: from now on the engine answers for them."""
        for item in items:
            days = self._unconfirmed.get(item.doc_id)
            if days is not None and item.day in days:
                days.remove(item.day)
                if not days:
                    del self._unconfirmed[item.doc_id]

    def _stored(self, items: list[IndexItem]) -> dict[str, list[int]]:
        """doc_id -> days of the indices that hold a copy (realtime: no refresh needed).

        Asked per concrete index: a rolled-over day alias points at several and mget
        refuses such an alias."""
        cache: dict[int, list[str]] = {}
        wanted: dict[tuple[str, str], None] = {}
        for item in items:
            if item.day not in cache:
                cache[item.day] = self.indices_for(item.day)
            wanted.update(((index, item.doc_id), None) for index in cache[item.day])
        found: dict[str, list[int]] = {}
        for index, doc_id in stored_copies(self.client, wanted):
            day = day_of_index(index)
            if day is not None:
                found.setdefault(doc_id, []).append(day)
        return found
