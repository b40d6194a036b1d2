"""The reprocess bookkeeping index: run states and the generation registry, with CAS updates.

The index maps only the fields it filters on (``dynamic: false``): run documents carry large,
free-form payloads (plans, per-merchant tallies) that must be stored but never indexed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError

from pulse.naming import Names
from storage.templates import ensure_index

MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "kind": {"type": "keyword"},
        "run_id": {"type": "keyword"},
        "phase": {"type": "keyword"},
        "created_at": {"type": "long"},
    },
}


class StaleWrite(RuntimeError):
    """Another process updated the document since we read it (compare-and-set failed)."""


@dataclass(frozen=True)
class Versioned:
    """A document's source with the sequence number and primary term it was read at."""

    source: dict[str, Any]
    seq_no: int | None = None
    primary_term: int | None = None


def ensure_store(client: OpenSearch, names: Names) -> None:
    if ensure_index(client, names.reprocess_index):
        client.indices.put_mapping(index=names.reprocess_index, body=MAPPING)


def read(client: OpenSearch, names: Names, doc_id: str) -> Versioned | None:
    try:
        doc = client.get(index=names.reprocess_index, id=doc_id)
    except NotFoundError:
        return None
    return Versioned(doc["_source"], doc["_seq_no"], doc["_primary_term"])


def write(
    client: OpenSearch, names: Names, doc_id: str, prev: Versioned | None, source: dict[str, Any]
) -> Versioned:
    """Write ``source`` only if the document is still as ``prev`` saw it (None: must not exist)."""
    params: dict[str, Any] = {}  # no refresh: GET is real-time; search() refreshes first
    if prev is None or prev.seq_no is None:
        params["op_type"] = "create"
    else:
        params.update(if_seq_no=prev.seq_no, if_primary_term=prev.primary_term)
    try:
        r = client.index(index=names.reprocess_index, id=doc_id, body=source, **params)
    except ConflictError as exc:
        raise StaleWrite(f"{doc_id} changed concurrently; re-read and retry") from exc
    return Versioned(source, r["_seq_no"], r["_primary_term"])


def search(client: OpenSearch, names: Names, kind: str, size: int = 100) -> list[dict[str, Any]]:
    """Documents of ``kind``, newest first."""
    if not client.indices.exists(index=names.reprocess_index):
        return []
    client.indices.refresh(index=names.reprocess_index)
    body = {
        "size": size,
        "query": {"term": {"kind": kind}},
        "sort": [{"created_at": {"order": "desc"}}],
    }
    hits = client.search(index=names.reprocess_index, body=body)["hits"]["hits"]
    return [h["_source"] for h in hits]
