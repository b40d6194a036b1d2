"""First purchases: one document per merchant-customer holding its first-ever succeeded payment.

The contract between the writer (``rollups.customers``, run by the rollup job, backfills and
the reprocess rebuild) and the readers (the API's NEW_CUSTOMERS, RETURNING_CUSTOMERS and
``cohorts``); docs/decisions/0210.

- Index ``first-purchases-<generation>`` (``index_name``), one index, not time-based: a
  customer's document lives as long as the merchant-customer does, whatever day it was
  written. Mapping ``MAPPING`` (strict); shards ``first_purchase_shards``.
- ``_id`` = ``doc_id(merchant, customer_hash)`` (deterministic): concurrent writers meet on
  one document and write it by compare-and-set (``if_seq_no``/``if_primary_term``, or
  ``create`` when absent), so no update is lost and no customer is counted twice.
- ``first_paid_at`` is the earliest ``occurred_at`` (epoch ms) of the merchant's succeeded
  ``payment`` events carrying that customer, over all raw history the writer has seen: a late
  earlier payment moves it back; a reprocessed range is re-derived (``rollups.customers``).
- The customer is ``customer_hash`` (the raw documents' 64-bit hash of ``customer_id``),
  the same identity UNIQUE_CUSTOMERS counts.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch

from pulse.naming import Names
from storage.templates import create_index

MERCHANT = "merchant_id"
CUSTOMER = "customer_hash"
FIRST_PAID_AT = "first_paid_at"
COMPUTED_AT = "computed_at"
MGET_CHUNK = 2000

MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        MERCHANT: {"type": "keyword"},
        # The signed 64-bit hash as a decimal keyword: engines hand long terms and sort
        # values back through doubles (53 bits), which would merge distinct customers.
        CUSTOMER: {"type": "keyword"},
        FIRST_PAID_AT: {"type": "date", "format": "epoch_millis"},
        COMPUTED_AT: {"type": "long", "index": False},
    },
}

Key = tuple[str, int]  # (merchant_id, customer_hash)


@dataclass(frozen=True)
class Stored:
    """A document as read: its first purchase (None when absent) and its CAS token."""

    first_paid_at: int | None
    cas: tuple[int, int] | None  # (seq_no, primary_term); None when absent


def index_name(names: Names, generation: str) -> str:
    """The first-purchase index of a generation (namespaced like every Pulse index)."""
    prefix = names.template_prefix  # "pulse" or "<namespace>-pulse"
    return f"{prefix}-first-purchases-{generation}"


def doc_id(merchant_id: str, customer_hash: int) -> str:
    key = f"{merchant_id}\x1f{customer_hash}".encode()
    digest = hashlib.blake2b(key, digest_size=16).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def doc(merchant_id: str, customer_hash: int, first_ms: int, computed_at: int) -> dict[str, Any]:
    return {
        MERCHANT: merchant_id,
        CUSTOMER: str(customer_hash),
        FIRST_PAID_AT: first_ms,
        COMPUTED_AT: computed_at,
    }


def ensure_index(client: OpenSearch, names: Names, generation: str, shards: int) -> str:
    """Create the index with its mapping unless it exists (idempotent, race-safe)."""
    index = index_name(names, generation)
    if not client.indices.exists(index=index):
        body = {"settings": {"number_of_shards": shards}, "mappings": MAPPING}
        create_index(client, index, body)
    return index


def read(
    client: OpenSearch, names: Names, generation: str, keys: Sequence[Key], timeout_s: float = 30.0
) -> dict[Key, Stored]:
    """The stored documents of ``keys`` (absent ones as ``Stored(None, None)``), by ``mget``
    in chunks; a missing index reads as every document absent."""
    index = index_name(names, generation)
    out: dict[Key, Stored] = {}
    for offset in range(0, len(keys), MGET_CHUNK):
        chunk = keys[offset : offset + MGET_CHUNK]
        docs = [{"_index": index, "_id": doc_id(m, c)} for m, c in chunk]
        found = client.mget(body={"docs": docs}, request_timeout=timeout_s)["docs"]
        for key, hit in zip(chunk, found, strict=True):
            out[key] = _stored(hit)
    return out


def _stored(hit: dict[str, Any]) -> Stored:
    error = hit.get("error")
    if error and error.get("type") != "index_not_found_exception":
        raise RuntimeError(f"reading first purchases failed: {error}")
    if not hit.get("found"):
        return Stored(None, None)
    source = hit["_source"]
    return Stored(int(source[FIRST_PAID_AT]), (int(hit["_seq_no"]), int(hit["_primary_term"])))


def first_in(
    client: OpenSearch,
    names: Names,
    generation: str,
    start_ms: int,
    end_ms: int,
    page: int = 5000,
) -> Iterable[tuple[Key, int]]:
    """Every stored (key, first_paid_at) with first_paid_at in [start, end), any merchant
    (what a rebuilt range must re-derive), paged with ``search_after``."""
    index = index_name(names, generation)
    window = {"gte": start_ms, "lt": end_ms, "format": "epoch_millis"}
    after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {
            "size": page,
            "track_total_hits": False,
            "query": {"range": {FIRST_PAID_AT: window}},
            "sort": [{MERCHANT: "asc"}, {CUSTOMER: "asc"}],
            "_source": [MERCHANT, CUSTOMER, FIRST_PAID_AT],
        }
        if after is not None:
            body["search_after"] = after
        hits = client.search(index=index, body=body, ignore_unavailable=True)["hits"]["hits"]
        for hit in hits:
            src = hit["_source"]
            yield (str(src[MERCHANT]), int(src[CUSTOMER])), int(src[FIRST_PAID_AT])
        if len(hits) < page:
            return
        after = hits[-1]["sort"]
