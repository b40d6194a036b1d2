"""Keeping each merchant-customer's first purchase (storage.first_purchases) true to raw.

Two entry points, both one call from the rollup machinery (docs/decisions/0210):

- ``observe_ingested(W_from, W_to)`` (each scheduled run) and ``observe(pairs)`` (each
  backfill hour): the earliest succeeded payment of every customer among the events ingested
  in (W_from, W_to], or occurring in the pairs, is folded in: first = min(stored, seen). A late
  earlier payment moves the first back; a duplicate, a re-run or an overlapping run changes
  nothing (min is idempotent), so unlike the rollups this needs no closed hour. Cost: one
  composite aggregation over those paid events, one ``mget`` of their customers, and a write
  only where a first purchase is new or moved.
- ``rebuild(start, end)``: after ``pulse reprocess`` replaced the raw events of [start, end)
  (switch or rollback), a first inside the range may no longer exist, so min() is not enough.
  For every customer paying in the range or stored with a first in it, the first becomes
  min(stored first if it lies outside the range, raw minimum over all retained history), or
  the document is deleted when neither exists. A stored first outside the range stays valid
  evidence: the reprocess did not touch it, and retention may have deleted its raw day.

Writes are compare-and-set on the document's ``seq_no`` (``create`` when absent): a writer that
lost the race re-reads and recomputes, so a run, a backfill and a rebuild side by side never
lose an update.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opensearchpy import OpenSearch, helpers

from ingest.contract import customer_hash
from pulse.naming import Names
from pulse.settings import Settings
from rollups.compute import Pair, composite_pages, pairs_query
from storage import first_purchases as fp
from storage import rollup_schema as rs

Key = fp.Key
Minimums = dict[Key, int]
Decide = Callable[[Key, int | None], int | None]  # (key, stored first) -> new first or None
CAS_ATTEMPTS = 8
TERMS_CHUNK = 1000  # customer hashes per terms clause when reading a customer's whole history


def paid_query(scope: dict[str, Any]) -> dict[str, Any]:
    """Succeeded payments that carry a customer, inside ``scope``."""
    return {"bool": {"filter": [scope, rs.RAW_PAID, {"exists": {"field": "customer_hash"}}]}}


def paid_minimums(client: OpenSearch, index: str, scope: dict[str, Any], page: int) -> Minimums:
    """Earliest succeeded payment per (merchant, customer) among the raw events in ``scope``."""
    # customer_id, not customer_hash: composite keys of a long come back through doubles.
    sources = [
        {"m": {"terms": {"field": "merchant_id"}}},
        {"c": {"terms": {"field": "customer_id"}}},
    ]
    comp = {
        "composite": {"size": page, "sources": sources},
        "aggs": {"first": {"min": {"field": "occurred_at"}}},
    }
    out: Minimums = {}
    for buckets in composite_pages(client, index, paid_query(scope), comp):
        for b in buckets:
            key = (str(b["key"]["m"]), customer_hash(str(b["key"]["c"])))
            out[key] = int(b["first"]["value"])
    return out


def observe_ingested(
    client: OpenSearch,
    settings: Settings,
    names: Names,
    after_ms: int | None,
    through_ms: int,
    keep: Callable[[str], bool] | None = None,
) -> int:
    """Fold in the succeeded payments ingested in (after, through] (a scheduled run's W_from
    and W_to), whatever hour they occurred in: min() needs no closed hour, so first purchases
    are folded in at the arrival rate rather than in each hour's closing run. ``keep`` picks
    the merchants (a sharded worker's shards)."""
    fp.ensure_index(client, names, settings.generation, settings.first_purchase_shards)
    ingested: dict[str, Any] = {"lte": through_ms, "format": "epoch_millis"}
    if after_ms is not None:
        ingested["gt"] = after_ms
    scope = {"range": {"ingested_at": ingested}}
    seen = paid_minimums(client, names.events_alias, scope, settings.rollup_page_size)
    if keep is not None:
        seen = {key: first for key, first in seen.items() if keep(key[0])}
    return fold(client, settings, names, seen)


def fold(client: OpenSearch, settings: Settings, names: Names, seen: Minimums) -> int:
    """first = min(stored, seen) for every key seen; documents written."""

    def earliest(key: Key, stored: int | None) -> int | None:
        return seen[key] if stored is None else min(stored, seen[key])

    return settle(client, settings, names, sorted(seen), earliest)


def observe(client: OpenSearch, settings: Settings, names: Names, pairs: Sequence[Pair]) -> int:
    """Fold the first purchases seen in ``pairs`` into the state; documents written."""
    if not pairs:
        return 0
    fp.ensure_index(client, names, settings.generation, settings.first_purchase_shards)
    seen: Minimums = {}
    size = settings.rollup_pairs_per_query
    for offset in range(0, len(pairs), size):
        chunk = pairs[offset : offset + size]
        found = paid_minimums(
            client, names.events_alias, pairs_query(chunk), settings.rollup_page_size
        )
        for key, first in found.items():
            seen[key] = min(first, seen.get(key, first))
    return fold(client, settings, names, seen)


def rebuild(
    client: OpenSearch, settings: Settings, names: Names, start_ms: int, end_ms: int
) -> int:
    """Re-derive every first purchase a replaced raw range [start, end) can have changed."""
    fp.ensure_index(client, names, settings.generation, settings.first_purchase_shards)
    client.indices.refresh(index=names.events_alias, ignore_unavailable=True, allow_no_indices=True)
    window = {"range": {"occurred_at": {"gte": start_ms, "lt": end_ms, "format": "epoch_millis"}}}
    page = settings.rollup_page_size
    in_range = paid_minimums(client, names.events_alias, window, page)
    client.indices.refresh(index=fp.index_name(names, settings.generation))
    stored_inside = dict(fp.first_in(client, names, settings.generation, start_ms, end_ms))
    history = whole_history(client, names.events_alias, stored_inside, page)

    def rederive(key: Key, stored: int | None) -> int | None:
        candidates = [t for t in (in_range.get(key), history.get(key)) if t is not None]
        if stored is not None and not start_ms <= stored < end_ms:
            candidates.append(stored)
        return min(candidates) if candidates else None

    keys = sorted(set(in_range) | set(stored_inside))
    return settle(client, settings, names, keys, rederive)


def whole_history(client: OpenSearch, index: str, keys: Iterable[Key], page: int) -> Minimums:
    """Earliest succeeded payment over all raw history of the given customers."""
    by_merchant: dict[str, list[int]] = {}
    for merchant, customer in keys:
        by_merchant.setdefault(merchant, []).append(customer)
    out: Minimums = {}
    for merchant, customers in sorted(by_merchant.items()):
        for offset in range(0, len(customers), TERMS_CHUNK):
            chunk = sorted(customers[offset : offset + TERMS_CHUNK])
            scope = {
                "bool": {
                    "filter": [
                        {"term": {"merchant_id": merchant}},
                        {"terms": {"customer_hash": chunk}},
                    ]
                }
            }
            out.update(paid_minimums(client, index, scope, page))
    return out


def settle(
    client: OpenSearch, settings: Settings, names: Names, keys: Sequence[Key], decide: Decide
) -> int:
    """Write ``decide(key, stored)`` for each key by compare-and-set, re-reading the keys
    that lost a race; returns the documents written or deleted."""
    written = 0
    pending = list(keys)
    for _ in range(CAS_ATTEMPTS):
        if not pending:
            return written
        stored = fp.read(client, names, settings.generation, pending)
        actions = [a for k in pending if (a := _action(settings, names, k, stored[k], decide))]
        done, lost = _write(client, actions)
        written += done
        pending = sorted(lost)
    if pending:
        raise RuntimeError(f"{len(pending)} first purchases kept changing while being written")
    return written


def _action(
    settings: Settings, names: Names, key: Key, stored: fp.Stored, decide: Decide
) -> dict[str, Any] | None:
    new = decide(key, stored.first_paid_at)
    if new == stored.first_paid_at:
        return None  # unchanged: no write (most customers of a run are returning ones)
    action: dict[str, Any] = {
        "_index": fp.index_name(names, settings.generation),
        "_id": fp.doc_id(*key),
        "_key": key,
    }
    if stored.cas is None:
        assert new is not None
        action["_op_type"] = "create"  # fails if a concurrent writer created it first
    else:
        action["_op_type"] = "delete" if new is None else "index"
        action["if_seq_no"], action["if_primary_term"] = stored.cas
    if new is not None:
        action["_source"] = fp.doc(key[0], key[1], new, int(time.time() * 1000))
    return action


def _write(client: OpenSearch, actions: list[dict[str, Any]]) -> tuple[int, set[Key]]:
    """Bulk the actions; (how many succeeded, keys that lost their compare-and-set)."""
    if not actions:
        return 0, set()
    by_id = {a["_id"]: a.pop("_key") for a in actions}
    done, lost = 0, set()
    results = helpers.streaming_bulk(
        client, actions, chunk_size=1000, raise_on_error=False, max_retries=3
    )
    for ok, item in results:
        result = next(iter(item.values()))
        if ok:
            done += 1
        elif result.get("status") in (404, 409):  # changed or deleted since read: redo
            lost.add(by_id[result["_id"]])
        else:
            raise RuntimeError(f"writing a first purchase failed: {item}")
    return done, lost
