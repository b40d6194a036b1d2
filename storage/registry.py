"""The generation registry: which raw generation serves (and receives) each UTC day.

One document in the reprocess index. Days not listed use the configured default
(``Settings.generation``). A switch moves a range of days to a new generation here *before*
swapping the read alias, so the live indexer starts writing late events of those days into
the new generation (docs/decisions/0050). The live indexer calls
``GenerationResolver.generation_for_day`` when it picks a bulk action's target.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from opensearchpy import OpenSearch
from tenacity import retry, retry_if_exception_type, stop_after_attempt

from pulse.naming import DAY_FORMAT, Names
from storage import reprocess_index as store

REGISTRY_ID = "generation-registry"


@dataclass(frozen=True)
class Registry:
    """Per-day generation overrides on top of ``default``; ``version`` grows on every change."""

    default: str
    days: Mapping[str, str] = field(default_factory=dict)
    version: int = 0

    def generation_for(self, day: date) -> str:
        return self.days.get(day.strftime(DAY_FORMAT), self.default)


def load(client: OpenSearch, names: Names, default: str) -> tuple[Registry, store.Versioned | None]:
    doc = store.read(client, names, REGISTRY_ID) if _exists(client, names) else None
    if doc is None:
        return Registry(default), None
    src = doc.source
    return Registry(default, dict(src.get("days", {})), int(src.get("version", 0))), doc


@retry(retry=retry_if_exception_type(store.StaleWrite), stop=stop_after_attempt(10), reraise=True)
def assign(client: OpenSearch, names: Names, default: str, days: Mapping[date, str]) -> Registry:
    """Point ``days`` at the given generations in one compare-and-set update."""
    store.ensure_store(client, names)
    current, doc = load(client, names, default)
    merged = dict(current.days)
    for day, generation in days.items():
        key = day.strftime(DAY_FORMAT)
        if generation == default:
            merged.pop(key, None)  # back on the default: keep the document small
        else:
            merged[key] = generation
    source = {"kind": "registry", "days": merged, "version": current.version + 1, "created_at": 0}
    store.write(client, names, REGISTRY_ID, doc, source)
    return Registry(default, merged, current.version + 1)


class GenerationResolver:
    """A cached view of the registry for hot paths (the live indexer, once per batch).

    Re-reads the document at most every ``ttl_s`` seconds; a switch waits longer than that
    before it stops replaying, so no late event falls between the two generations.
    """

    def __init__(self, client: OpenSearch, names: Names, default: str, ttl_s: float) -> None:
        self._client, self._names, self._default, self._ttl = client, names, default, ttl_s
        self._lock = threading.Lock()
        self._registry = Registry(default)
        self._read_at = -float("inf")

    def registry(self) -> Registry:
        with self._lock:
            if time.monotonic() - self._read_at >= self._ttl:
                self._registry = load(self._client, self._names, self._default)[0]
                self._read_at = time.monotonic()
            return self._registry

    def generation_for_day(self, day: date) -> str:
        return self.registry().generation_for(day)


def _exists(client: OpenSearch, names: Names) -> bool:
    return bool(client.indices.exists(index=names.reprocess_index))
