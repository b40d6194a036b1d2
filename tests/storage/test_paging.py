"""storage.paging: every match, in order, across page boundaries."""

from __future__ import annotations

from opensearchpy import OpenSearch, helpers

from pulse.naming import Names
from storage.paging import pages


def test_every_match_in_order_across_pages(os_client: OpenSearch, topics: Names) -> None:
    index = f"{topics.namespace}-paging"
    docs = [
        {"_index": index, "_id": str(i), "_source": {"k": i, "even": i % 2 == 0}} for i in range(11)
    ]
    helpers.bulk(os_client, docs, refresh=True)
    query = {"term": {"even": True}}
    got = [d["k"] for d in pages(os_client, index, query, [{"k": "asc"}], page=2)]
    assert got == [0, 2, 4, 6, 8, 10]  # three full pages of two, then an empty one
    got = [d["k"] for d in pages(os_client, index, {"match_all": {}}, [{"k": "asc"}], page=4)]
    assert got == list(range(11))
