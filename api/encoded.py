"""List items completed once, then answered as the JSON bytes of that completion (decision 0250).

A ``Keyed`` list value (the points of a report series: ``api.schema`` serves
``api.report.Points`` as one) gives every item a key that fixes the item's content within
the list's ``context()``. Completing such a list in a generated function (``api.plain``),
``Memo.encode`` looks each key up; an item seen before is its remembered bytes, any other is
completed by the generated item function and encoded as the response is (``orjson.dumps``
without options: ``api.app.Router.encode_json``). The list comes back as one
``orjson.Fragment``, which the response encoder copies as it is, so the answer's bytes are
those of completing and encoding every item.

Why: a 30-day hourly report is 720 points x 5 values, and a dashboard asks it again and
again while only its newest hours change. Building 3,600 values, 4,320 completed dicts and
encoding them was ~8 ms of API CPU per report; a repeated report now costs one key and one
lookup per point. Keys are content, not versions: nothing to invalidate, and the same hour of
two merchants with the same counters shares an entry.

Memory is bounded by entries over the process (``MEMO``, shared by every generated list
function): two generations of at most ``MAX_ENTRIES`` each; when the newer one fills up the
older one is dropped (an item found in the older one is carried over to the newer), so what
dashboards keep asking stays.

A list may also stand for a run of its items with one key (``Run``): items whose content that
key fixes as a whole, remembered as one entry of their joined JSON (decision 0315). A 30-day
hourly report's hours read from a remembered rollup answer are one run: one lookup instead of
720 keys built and looked up (~0.5 ms of the API's CPU per report). A run not remembered is
completed through its items' own keys (``keys_within``), so a new run of mostly known points
costs what those points' lookups cost. A run counts against the bound as the items it spans.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson

Complete = Callable[[Any], Any]  # a runtime value -> its completed (JSON-ready) value
Table = dict[Hashable, bytes]
MAX_ENTRIES = 60_000  # per generation; ~0.3-0.5 KB an entry (key + JSON): <= ~60 MB in all


@dataclass(frozen=True, slots=True)
class Run:
    """Items [start, stop) of a Keyed list (never empty) whose content ``key`` fixes as a
    whole, within the list's context."""

    key: Hashable
    start: int
    stop: int


class Keyed(Sequence[Any]):
    """A list value whose items are fixed by keys: equal keys within equal contexts are items
    whose completions are equal. A key of None: no key, the item is completed every time."""

    __slots__ = ()

    @abstractmethod
    def context(self) -> Hashable:
        """What every key of this list is relative to (e.g. metrics, currencies, zone)."""

    @abstractmethod
    def item_keys(self) -> Sequence[Hashable | Run | None]:
        """In order, one key per item or a ``Run`` standing for the items it spans (computed
        without building the items)."""

    def keys_within(self, start: int, stop: int) -> Sequence[Hashable | None]:
        """One key per item of [start, stop), for a list whose ``item_keys`` gives runs: how
        a run not remembered is completed. Without an override its items have no keys."""
        return [None] * (stop - start)


class Memo:
    """Remembered JSON of list items, per (item completion function, list type, context): a
    generated item function is one selection shape (api.plain), so its fields, aliases and
    order are part of what an entry is relative to."""

    def __init__(self, limit: int = MAX_ENTRIES) -> None:
        self.limit = limit
        self._new: dict[Hashable, Table] = {}
        self._old: dict[Hashable, Table] = {}
        self._held = 0  # entries in the newer generation
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def encode(self, items: Keyed, complete: Complete) -> orjson.Fragment:
        """The JSON array of ``complete(item)`` for every item, as a Fragment. Raises what
        ``complete`` raises (api.plain's ``Slow``: graphql-core's path takes over)."""
        context = (complete, type(items), items.context())
        with self._lock:
            new = self._new.get(context)
            if new is None:  # a table counts as an entry: contexts alone cannot grow unbounded
                new = self._new[context] = {}
                self._held += 1
            old = self._old.get(context, {})
        keys = items.item_keys()
        parts: list[bytes | None] = list(map(new.get, keys))  # None: not remembered, or no key
        added = completed = 0
        if None in parts:
            added, completed = self._fill(items, complete, keys, parts, (new, old))
        self._count(len(items), added, completed)
        return orjson.Fragment(b"[" + b",".join(cast("list[bytes]", parts)) + b"]")

    def _fill(
        self,
        items: Keyed,
        complete: Complete,
        keys: Sequence[Hashable | Run | None],
        parts: list[bytes | None],
        tables: tuple[Table, Table],
    ) -> tuple[int, int]:
        """Fill the parts not remembered in the newer table; (entries added, items completed)."""
        new, old = tables
        added = completed = at = 0  # ``at``: the first item of keys[i]
        for i, key in enumerate(keys):
            span = key.stop - key.start if isinstance(key, Run) else 1
            if parts[i] is None:
                part = None if key is None else old.get(key)
                if part is None:
                    if isinstance(key, Run):
                        part, done, fresh = self._run(items, complete, key, tables)
                        added += fresh
                    else:
                        part, done = _one(complete, items[at]), 1
                    completed += done
                if key is not None:
                    new[key] = part
                    added += span
                parts[i] = part
            at += span
        return added, completed

    def _run(
        self, items: Keyed, complete: Complete, run: Run, tables: tuple[Table, Table]
    ) -> tuple[bytes, int, int]:
        """A run's joined JSON through its items' keys; (JSON, items completed, entries added)."""
        new, old = tables
        pieces: list[bytes] = []
        completed = added = 0
        for i, key in enumerate(items.keys_within(run.start, run.stop), run.start):
            piece = None if key is None else new.get(key) or old.get(key)
            if piece is None:
                piece = _one(complete, items[i])
                completed += 1
            if key is not None and key not in new:
                new[key] = piece
                added += 1
            pieces.append(piece)
        return b",".join(pieces), completed, added

    def _count(self, items: int, added: int, completed: int) -> None:
        with self._lock:
            self.hits += items - completed
            self.misses += completed
            self._held += added
            if self._held > self.limit:  # the newer generation is full: it becomes the older
                self._old, self._new, self._held = self._new, {}, 0

    def held(self) -> int:
        """Entries in both generations."""
        with self._lock:
            tables = [*self._new.values(), *self._old.values()]
        return sum(len(t) for t in tables)


def _one(complete: Complete, item: Any) -> bytes:
    # orjson's bytes keep its 4 KB buffer; a slice is the exact size to keep.
    return orjson.dumps((complete(item),))[1:-1]


MEMO = Memo()  # the process's one memo (api.plain's generated list functions share it)
