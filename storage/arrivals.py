"""Per UTC day, an upper bound of the newest ``ingested_at`` written to its raw indices.

Writers of raw events (the indexer's BatchWriter, hence also a reprocess replay) call
``Arrivals.cover(days, stamp)`` *before* a bulk whose documents carry ``ingested_at = stamp``;
the bound is raised to ``stamp + lookahead`` so a busy day costs one small write per
``lookahead``, not one per batch. Documents ``arrivals.<YYYY.MM.DD>`` in the state index,
raised by compare-and-set (several writers), read with one realtime ``mget``.

Readers (rollups.state.dirty_hours; in the API, api.resolve and api.sources) ask only the
days whose bound is above the rollup watermark W, or that have no bound (written before this
existed, or by a writer that does not keep it): a day whose bound is <= W received nothing
after W (docs/decisions/0048).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from pulse.clock import DAY_MS as DAY_MS
from pulse.naming import DAY_FORMAT, Names
from storage.templates import ensure_index

PREFIX = "arrivals."


@lru_cache(maxsize=4096)  # a reader names a range's days per request: ~3 us each by strftime
def doc_id(day: int) -> str:
    """The bound's document for UTC day number ``day`` (epoch ms // DAY_MS)."""
    return PREFIX + datetime.fromtimestamp(day * DAY_MS / 1000, tz=UTC).strftime(DAY_FORMAT)


class Arrivals:
    """One writer's view of the bounds; thread-safe (the writer thread and its callers)."""

    def __init__(self, client: OpenSearch, names: Names, lookahead_ms: int) -> None:
        self.client = client
        self.names = names
        self.lookahead_ms = lookahead_ms
        self._known: dict[int, int] = {}  # day -> a bound known to be stored
        self._lock = threading.Lock()
        self._ensured = False

    def cover(self, days: Iterable[int], stamp_ms: int) -> None:
        """Make every day's stored bound >= ``stamp_ms`` before documents stamped with it are
        written. Engine errors propagate (the caller's retry policy applies)."""
        for day in days:
            with self._lock:
                if self._known.get(day, -1) >= stamp_ms:
                    continue
            if not self._ensured:  # the shared state index, with its settings, not auto-created
                ensure_index(self.client, self.names.state_index)
                self._ensured = True
            stored = _raise_to(self.client, self.names, day, stamp_ms, stamp_ms + self.lookahead_ms)
            with self._lock:
                self._known[day] = max(stored, self._known.get(day, -1))


@retry(
    retry=retry_if_exception_type(ConflictError),
    stop=stop_after_attempt(20),
    wait=wait_random_exponential(multiplier=0.01, max=0.2),
    reraise=True,
)
def _raise_to(client: OpenSearch, names: Names, day: int, need: int, target: int) -> int:
    """The stored bound after making it >= ``need`` (writing ``target`` when it was lower)."""
    index, key = names.state_index, doc_id(day)
    try:
        doc: dict[str, Any] | None = client.get(index=index, id=key)
    except NotFoundError:
        doc = None
    if doc is not None:
        stored = int(doc["_source"]["arrivals"]["newest"])
        if stored >= need:
            return stored
    body = {"arrivals": {"day": day, "newest": target}}
    if doc is None:
        client.create(index=index, id=key, body=body)
    else:
        client.index(
            index=index,
            id=key,
            body=body,
            if_seq_no=doc["_seq_no"],
            if_primary_term=doc["_primary_term"],
        )
    return target


def bounds(client: OpenSearch, names: Names, days: Iterable[int]) -> dict[int, int]:
    """day -> stored bound, for the days that have one (one realtime ``mget``)."""
    wanted = sorted(set(days))
    if not wanted:
        return {}
    try:
        found = client.mget(index=names.state_index, body={"ids": [doc_id(d) for d in wanted]})
    except NotFoundError:
        return {}
    return bounds_of(wanted, found.get("docs", []))


def bounds_of(days: list[int], docs: list[dict[str, Any]]) -> dict[int, int]:
    """day -> stored bound from the ``mget`` answers to ``doc_id`` of each of ``days``, in
    order (an index not written yet answers nothing: no bounds)."""
    out: dict[int, int] = {}
    for day, doc in zip(days, docs, strict=True):
        if doc.get("found"):
            out[day] = int(doc["_source"]["arrivals"]["newest"])
    return out
