"""The reprocess bookkeeping index: run states and the generation registry, with CAS updates.

The index maps only the fields it filters on (``dynamic: false``): run documents carry large,
free-form payloads (plans, per-merchant tally rows) that must be stored but never indexed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError

from pulse.naming import Names
from storage import paging
from storage.templates import ensure_index

MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "kind": {"type": "keyword"},
        "run_id": {"type": "keyword"},
        "phase": {"type": "keyword"},
        "created_at": {"type": "long"},
        # Tally batch documents (``reprocess.tallies``): found per run and day, paged by key.
        # (Not ``days``: the generation registry's document has an object of that name.)
        "tally_days": {"type": "keyword"},
        "tally_key": {"type": "keyword"},
    },
}


SORT_KEY = "tally_key"  # what ``scan`` pages by: documents it lists must carry it


class StaleWrite(RuntimeError):
    """Another process updated the document since we read it (compare-and-set failed)."""


@dataclass(frozen=True)
class Versioned:
    """A document's source with the sequence number and primary term it was read at."""

    source: dict[str, Any]
    seq_no: int | None = None
    primary_term: int | None = None


def ensure_store(client: OpenSearch, names: Names) -> None:
    """Create the index; the mapping is put every time (adding fields is idempotent), so an
    index created by an older version learns the fields filtered on since."""
    ensure_index(client, names.reprocess_index)
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


def put(client: OpenSearch, names: Names, doc_id: str, source: dict[str, Any]) -> None:
    """Write ``source`` under ``doc_id`` unconditionally (documents whose id says everything:
    a re-write carries the same meaning, so there is nothing to compare and set)."""
    client.index(index=names.reprocess_index, id=doc_id, body=source)


def scan(
    client: OpenSearch, names: Names, filters: dict[str, str], page: int = 50
) -> Iterator[dict[str, Any]]:
    """Every document whose keyword fields equal ``filters``, in ``tally_key`` order, a page
    at a time (``search_after``): memory stays at one page however many documents match."""
    if not client.indices.exists(index=names.reprocess_index):
        return
    client.indices.refresh(index=names.reprocess_index)
    query = {"bool": {"filter": [{"term": {f: v}} for f, v in filters.items()]}}
    sort = [{SORT_KEY: {"order": "asc"}}]
    yield from paging.pages(client, names.reprocess_index, query, sort, page)


def delete(client: OpenSearch, names: Names, filters: dict[str, str]) -> int:
    """Delete every document whose keyword fields equal ``filters``; how many were."""
    if not client.indices.exists(index=names.reprocess_index):
        return 0
    client.indices.refresh(index=names.reprocess_index)
    query = {"bool": {"filter": [{"term": {f: v}} for f, v in filters.items()]}}
    result = client.delete_by_query(
        index=names.reprocess_index, body={"query": query}, refresh=True, conflicts="proceed"
    )
    return int(result.get("deleted", 0))
