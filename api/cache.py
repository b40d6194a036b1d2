"""Rollup cells remembered by the versions of the day packs they were read from (decision 0246).

An unfiltered, ungrouped report folds the merchant's day packs (one document per UTC day,
``rollups.packs``) into cells for the hours given to rollups (``api.sources.total_doc_cells``):
for a 30-day hourly report ~4.9 ms of CPU per request, the largest single cost of the report
(one ``mget`` of 31 packs parsed from JSON, then 720 hours placed into cells).

``RollupCells.cells`` looks at the packs' *versions* first (the same ``mget`` without sources:
``_seq_no`` and ``_primary_term`` per document; source resolution reads them for every day of
the range in its rollup state ``mget``, decision 0260, so no round trip of their own) and
answers from memory when the same plan was answered from exactly those document versions
before. The key
is the plan (its bucket boundaries, metrics, merchant; not the request's clock or W), the hours
given to rollups and every pack's (index, id, found, seq_no, primary_term):

- a new rollup run, a late event's recompute, a reprocess rebuild or anything else that
  rewrites a pack gives it a new ``_seq_no``: a different key, so the cells are read again;
- a late event not yet rolled up makes its hour dirty: the split (``api.service``) gives that
  hour to raw, the hours differ, a different key;
- a generation switch reads other indices: other names in the key.

So a remembered answer is never older than what the uncached read returns at the same
moment. (A pack rewritten between the versions read and the full read is stored under the
older versions: a request that still sees those versions gets the newer cells, as a fresh read
a moment later would; versions only grow, so nothing older is ever served.) Stored cells are
never mutated: the service's merge shares them with the answer and makes a fresh cell only
where two reads meet (``api.cells.added_up``); conversion replaces cells (``api.fx``).
Memory is bounded by the number of cells held (LRU over plans; ~0.4 KB a cell; setting
``api_rollup_cache_cells``, 0 turns it off).

Each held answer has a ``token``, a number never given to another: the same token, the same
cells of the same plan (bar the clock). The GraphQL layer remembers the JSON of the points read
from one answer under its token (api.report's runs, decision 0315).
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from api.dsl import Packs
from api.engine import doc_version, mget
from api.model import DocVersion, QueryPlan

if TYPE_CHECKING:  # api.sources (the execution stage) calls this cache around its pack reads
    from api.sources import Cells, Ctx

Load = Callable[["Ctx", QueryPlan, Packs], "Cells"]
TOKENS = itertools.count(1)  # the process's tokens (of every RollupCells): none given twice
Versions = tuple[DocVersion, ...]


class RollupCells:
    """A process-wide LRU of rollup cells keyed by plan, hours and pack versions."""

    def __init__(self) -> None:
        self._entries: OrderedDict[Hashable, Cells] = OrderedDict()
        self._held = 0  # cells held over all entries
        self._tokens: dict[int, int] = {}  # id() of each held answer -> its token
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def remembered(
        self, ctx: Ctx, plan: QueryPlan, read: Packs, known: Versions | None
    ) -> Cells | None:
        """The cells ``cells`` would answer from memory with the versions ``known``, without
        any engine read; None when they are not remembered (or ``known`` does not cover
        ``read``). Lets the execution stage keep a remembered read off its thread pool."""
        if ctx.settings.api_rollup_cache_cells <= 0 or known is None:
            return None
        before = _of(known, read)
        if before is None:
            return None
        return self._lookup(_key(plan, read, before))

    def cells(
        self, ctx: Ctx, plan: QueryPlan, read: Packs, load: Load, known: Versions | None = None
    ) -> Cells:
        """``load(ctx, plan, read)``, or the same cells remembered from the same packs.
        ``known``: pack versions read already (with the rollup state, decision 0260); the
        packs' versions are asked for only when they do not cover ``read``.
        The returned cells are shared: read them, never change them."""
        limit = ctx.settings.api_rollup_cache_cells
        if limit <= 0:
            return load(ctx, plan, read)
        before = _of(known, read) if known is not None else None
        if before is None:
            before = _versions(ctx, list(read.docs))
        if before is None:  # an engine that does not say which version it read
            return load(ctx, plan, read)
        key = _key(plan, read, before)
        found = self._lookup(key)
        if found is not None:
            return found
        with self._lock:
            self.misses += 1
        cells = load(ctx, plan, read)
        if len(cells) <= limit:
            self._keep(key, cells, limit)
        return cells

    def token(self, cells: Cells) -> int | None:
        """The token of ``cells`` if they are an answer held now (the very dict ``cells`` or
        ``remembered`` returned), else None. Tokens are never reused: an answer dropped and
        read again gets a new one."""
        with self._lock:
            # The caller holds ``cells``: its id() cannot be another live dict's meanwhile.
            return self._tokens.get(id(cells))

    def _lookup(self, key: Hashable) -> Cells | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            return found

    def _keep(self, key: Hashable, cells: Cells, limit: int) -> None:
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = cells
            self._tokens[id(cells)] = next(TOKENS)
            self._held += len(cells)
            while self._held > limit:
                _, dropped = self._entries.popitem(last=False)
                self._held -= len(dropped)
                del self._tokens[id(dropped)]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._tokens.clear()
            self._held = 0


def _key(plan: QueryPlan, read: Packs, versions: Versions) -> Hashable:
    """The resolution's W and the request's clock are not in the key: the pack versions
    already say what was read."""
    return (replace(plan, now_ms=0, compare=None), read.intervals, versions)


def _of(known: Versions, read: Packs) -> Versions | None:
    """The versions of ``read``'s packs among ``known`` (None when one is not there)."""
    by_doc = {(v[0], v[1]): v for v in known}
    found = [by_doc.get((doc["_index"], doc["_id"])) for doc in read.docs]
    out = tuple(v for v in found if v is not None)
    return out if len(out) == len(found) else None


def _versions(ctx: Ctx, docs: list[dict[str, Any]]) -> Versions | None:
    """Each pack's (index, id, found, seq_no, primary_term), sources left out; None when a
    found document comes without its sequence number (nothing to key on)."""
    bare = [{**doc, "_source": False} for doc in docs]
    out = []
    for doc in mget(ctx.client, bare, ctx.settings.api_request_timeout_s) if docs else []:
        version = doc_version(doc)
        if version is None:
            return None
        out.append(version)
    return tuple(out)


ROLLUP_CELLS = RollupCells()
