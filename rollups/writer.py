"""Writing recomputed buckets, and removing the documents of combinations that disappeared.

Every write is versioned: ``version_type=external_gte`` with ``version = computed_at``, the
instant taken just before the raw data was read. A slow or zombie writer holding an older
snapshot is refused (409, ignored) instead of overwriting a newer result, so a run killed or
paused mid-way can never undo a later run. Stale combinations are removed per recomputed
(merchant, hour) with ``computed_at < this computation``; after the refresh, that matches
exactly the documents this computation did not rewrite.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from opensearchpy import OpenSearch, helpers

from ilm.templates import ensure_index
from pulse.naming import Names
from rollups import schema as rs
from rollups.compute import Bucket, BucketKey, Pair


class WriteFailed(RuntimeError):
    """Some rollup documents could not be written (other than being superseded)."""


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
            ensure_index(self.client, index, {self.names.rollups_alias: {}})
            self._ensured.add(index)
        return index

    def write(self, buckets: dict[BucketKey, Bucket], computed_at: int) -> int:
        """Bulk-write the buckets; returns how many documents were superseded (409)."""
        actions = self._actions(buckets.items(), computed_at)
        superseded = 0
        errors: list[Any] = []
        for ok, item in helpers.streaming_bulk(
            self.client, actions, chunk_size=2000, raise_on_error=False, max_retries=3
        ):
            if ok:
                continue
            status = next(iter(item.values())).get("status")
            if status == 409:
                superseded += 1  # a newer computation already wrote this document
            else:
                errors.append(item)
        if errors:
            raise WriteFailed(f"{len(errors)} rollup documents failed, first: {errors[0]}")
        return superseded

    def _actions(
        self, items: Iterable[tuple[BucketKey, Bucket]], computed_at: int
    ) -> Iterator[dict[str, Any]]:
        for key, bucket in items:
            merchant, hour, values = key
            yield {
                "_op_type": "index",
                "_index": self.index_for(hour),
                "_id": rs.doc_id(merchant, hour, values),
                "version": computed_at,
                "version_type": "external_gte",
                "_source": bucket.to_doc(key, self.generation, computed_at),
            }

    def delete_stale(self, pairs: Sequence[Pair], computed_at: int) -> int:
        """Delete documents of these pairs older than ``computed_at``; returns how many."""
        indices = sorted({self.index_for(hour) for _, hour in pairs})
        if not indices:
            return 0
        # Make this computation's writes visible first, so they are not "older".
        self.client.indices.refresh(index=",".join(indices))
        should = [
            {"bool": {"filter": [{"term": {rs.MERCHANT: m}}, {"term": {rs.HOUR: h}}]}}
            for m, h in pairs
        ]
        query = {
            "bool": {
                "filter": [
                    {"range": {rs.COMPUTED_AT: {"lt": computed_at, "format": "epoch_millis"}}}
                ],
                "should": should,
                "minimum_should_match": 1,
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
