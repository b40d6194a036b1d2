"""Reading every document a query matches, one page at a time (``search_after``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from opensearchpy import OpenSearch


def pages(
    client: OpenSearch, index: str, query: dict[str, Any], sort: list[Any], page: int
) -> Iterator[dict[str, Any]]:
    """The ``_source`` of every match in ``sort`` order: memory stays at one page however
    many documents match (``sort`` must end on a unique key, or a page boundary may skip)."""
    after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {
            "size": page,
            "query": query,
            "sort": sort,
            "track_total_hits": False,
        }
        if after is not None:
            body["search_after"] = after
        hits = client.search(index=index, body=body)["hits"]["hits"]
        for hit in hits:
            yield hit["_source"]
        if len(hits) < page:
            return
        after = hits[-1]["sort"]
