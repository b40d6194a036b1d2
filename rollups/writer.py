"""Writing recomputed buckets, and removing the documents of combinations that disappeared.

Every write is versioned: ``version_type=external_gte`` with ``version = computed_at``, the
instant taken just before the raw data was read. A slow or zombie writer holding an older
snapshot is refused (409, ignored) instead of overwriting a newer result, so a run killed or
paused mid-way can never undo a later run. A document whose content did not change is not
rewritten (checked by ``mget``), which keeps re-runs for a few late events cheap.

Stale combinations: after a refresh, the recomputed pairs' documents whose id is not among
this computation's buckets and whose ``computed_at`` is older than it are deleted
(``delete_by_query``); a newer writer's documents are never older, so they are never removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch, helpers

from pulse.naming import Names
from rollups.compute import Bucket, BucketKey, Pair
from storage import rollup_schema as rs
from storage.templates import ROLLUP_PROPERTIES, ensure_index

# Fields added since schema 1 (put on indices made from an older template).
NEW_FIELDS = {
    f: ROLLUP_PROPERTIES[f]
    for f in (
        rs.LEVEL,
        rs.TOTAL_OF,
        rs.DAY,
        rs.PACK,
        rs.CURRENCY,
        rs.MONEY,
        rs.DISPUTES,
        "decline_code",
    )
}


class WriteFailed(RuntimeError):
    """Some rollup documents could not be written (other than being superseded)."""


@dataclass
class WriteResult:
    ids: frozenset[str]  # every document id of the recomputed buckets
    written: int = 0
    unchanged: int = 0  # already stored with the same content: not rewritten
    superseded: int = 0  # refused because a newer computation wrote it (409)


def _same(stored: dict[str, Any] | None, doc: dict[str, Any]) -> bool:
    if stored is None:
        return False
    return all(stored.get(k) == v for k, v in doc.items() if k != rs.COMPUTED_AT)


class RollupWriter:
    """Writes rollup documents of one generation into their monthly indices."""

    def __init__(self, client: OpenSearch, names: Names, generation: str) -> None:
        self.client = client
        self.names = names
        self.generation = generation
        self._ensured: set[str] = set()

    def index_for(self, hour: int) -> str:
        """The hour's monthly index, created (with read-alias membership) on first use."""
        index = rs.index_for(self.names, self.generation, hour)
        if index not in self._ensured:
            if not ensure_index(self.client, index, {self.names.rollups_alias: {}}):
                # Made from an older template: add fields a newer job writes (additive).
                self.client.indices.put_mapping(index=index, body={"properties": NEW_FIELDS})
            self._ensured.add(index)
        return index

    def write(self, buckets: dict[BucketKey, Bucket], computed_at: int) -> WriteResult:
        """Write the buckets whose document differs from what is stored (ids returned)."""
        docs = {
            rs.doc_id(*key): (self.index_for(key[1]), b.to_doc(key, self.generation, computed_at))
            for key, b in buckets.items()
        }
        result = WriteResult(ids=frozenset(docs))
        changed = self._changed(docs)
        result.unchanged = len(docs) - len(changed)
        errors: list[Any] = []
        for ok, item in helpers.streaming_bulk(
            self.client,
            (self._action(i, *docs[i], computed_at) for i in changed),
            chunk_size=2000,
            raise_on_error=False,
            max_retries=3,
        ):
            if ok:
                result.written += 1
            elif next(iter(item.values())).get("status") == 409:
                result.superseded += 1  # a newer computation already wrote this document
            else:
                errors.append(item)
        if errors:
            raise WriteFailed(f"{len(errors)} rollup documents failed, first: {errors[0]}")
        return result

    def _changed(self, docs: dict[str, tuple[str, dict[str, Any]]]) -> list[str]:
        """Ids whose stored document (ignoring computed_at) differs or is missing.

        Recomputing a (merchant, hour) after one late event changes one combination out of
        possibly hundreds; reading them back by id is far cheaper than rewriting them all.
        """
        by_index: dict[str, list[str]] = {}
        for doc_id, (index, _) in docs.items():
            by_index.setdefault(index, []).append(doc_id)
        changed: list[str] = []
        for index, ids in by_index.items():
            for start in range(0, len(ids), 2000):
                batch = ids[start : start + 2000]
                found = self.client.mget(index=index, body={"ids": batch})["docs"]
                changed += [
                    d["_id"] for d in found if not _same(d.get("_source"), docs[d["_id"]][1])
                ]
        return changed

    @staticmethod
    def _action(doc_id: str, index: str, doc: dict[str, Any], computed_at: int) -> dict[str, Any]:
        return {
            "_op_type": "index",
            "_index": index,
            "_id": doc_id,
            "version": computed_at,
            "version_type": "external_gte",
            "_source": doc,
        }

    def delete_stale(self, pairs: Sequence[Pair], keep: frozenset[str], computed_at: int) -> int:
        """Delete the pairs' documents not in ``keep`` and older than ``computed_at``."""
        indices = sorted({self.index_for(hour) for _, hour in pairs})
        if not indices:
            return 0
        # Make this computation's writes visible first, so the query sees current versions.
        self.client.indices.refresh(index=",".join(indices))
        # Per hour, a terms on merchants: one clause per hour instead of one per pair keeps
        # the engine's per-document work small (it evaluates every clause).
        by_hour: dict[int, list[str]] = {}
        for merchant, hour in pairs:
            by_hour.setdefault(hour, []).append(merchant)
        should = [
            {"bool": {"filter": [{"term": {rs.HOUR: h}}, {"terms": {rs.MERCHANT: sorted(ms)}}]}}
            for h, ms in sorted(by_hour.items())
        ]
        query = {
            "bool": {
                "filter": [
                    {"range": {rs.COMPUTED_AT: {"lt": computed_at, "format": "epoch_millis"}}}
                ],
                "should": should,
                "minimum_should_match": 1,
                "must_not": [{"ids": {"values": sorted(keep)}}],
            }
        }
        result = self.client.delete_by_query(
            index=",".join(indices),
            body={"query": query},
            conflicts="proceed",
            refresh=True,
            ignore_unavailable=True,
        )
        return int(result.get("deleted", 0))

    def delete_absent(self, hour: int, merchants: set[str], computed_at: int) -> set[str]:
        """Delete the hour's documents of merchants not in ``merchants``, older than
        ``computed_at`` (their raw events are gone, e.g. replaced by a reprocess); the
        merchants whose documents were deleted (their day packs must be derived again)."""
        index = self.index_for(hour)
        query = {
            "bool": {
                "filter": [
                    {"term": {rs.HOUR: hour}},
                    {"range": {rs.COMPUTED_AT: {"lt": computed_at, "format": "epoch_millis"}}},
                ],
                "must_not": [{"terms": {rs.MERCHANT: sorted(merchants)}}],
            }
        }
        self.client.indices.refresh(index=index)
        gone = self._merchants(index, query)
        if gone:
            self.client.delete_by_query(
                index=index, body={"query": query}, conflicts="proceed", refresh=True
            )
        return gone

    def _merchants(self, index: str, query: dict[str, Any]) -> set[str]:
        """The distinct merchants of the documents ``query`` matches (composite paging)."""
        out: set[str] = set()
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {
                "size": 1000,
                "sources": [{"m": {"terms": {"field": rs.MERCHANT}}}],
            }
            if after:
                composite["after"] = after
            body = {"size": 0, "query": query, "aggs": {"m": {"composite": composite}}}
            agg = self.client.search(index=index, body=body)["aggregations"]["m"]
            out.update(str(b["key"]["m"]) for b in agg["buckets"])
            after = agg.get("after_key")
            if not after or len(agg["buckets"]) < 1000:
                return out
