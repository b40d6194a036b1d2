"""Which of some (index, ``_id``) pairs the engine holds: the first-copy check of decision
0011, asked by the live writer (``indexer.writer``) and a replay (``reprocess.firstcopy``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from opensearchpy import OpenSearch

FILTER = "docs._index,docs._id,docs.found"


def stored_copies(client: OpenSearch, wanted: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (index, ``_id``) pairs of ``wanted`` that exist, by one realtime ``_mget`` (no
    refresh lag). Indices must be concrete: mget refuses an alias with several members (a
    rolled-over day). The body is encoded here with orjson: bytes pass opensearch-py's
    serializer untouched (its stdlib json encoder costs ~1 µs per entry)."""
    docs = [{"_index": index, "_id": doc_id} for index, doc_id in wanted]
    if not docs:
        return []
    response: dict[str, Any] = client.transport.perform_request(
        "POST",
        "/_mget",
        body=orjson.dumps({"docs": docs}),
        params={"_source": "false", "filter_path": FILTER},
    )
    return [(d["_index"], d["_id"]) for d in response.get("docs", []) if d.get("found")]
