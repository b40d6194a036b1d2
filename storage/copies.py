"""Which of some (index, ``_id``) pairs the engine holds: the first-copy check of decision
0011, asked by the live writer (``indexer.writer``) and a replay (``reprocess.firstcopy``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec
import orjson
from opensearchpy import OpenSearch

from storage.typed import request_typed

FILTER = "docs._index,docs._id,docs.found"


class _Doc(msgspec.Struct, frozen=True, gc=False):
    index: str = msgspec.field(name="_index")
    id: str = msgspec.field(name="_id")
    found: bool = False  # absent when the index is missing (an error entry): not stored


class _Docs(msgspec.Struct, frozen=True, gc=False):
    docs: list[_Doc] = []


def stored_copies(client: OpenSearch, wanted: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (index, ``_id``) pairs of ``wanted`` that exist, by one realtime ``_mget`` (no
    refresh lag), in the order asked. Indices must be concrete: mget refuses an alias with
    several members (a rolled-over day)."""
    return stored_in(client, [(index, (doc_id,)) for index, doc_id in wanted])


def stored_in(
    client: OpenSearch, groups: Iterable[tuple[str, Sequence[str]]]
) -> list[tuple[str, str]]:
    """``stored_copies`` for ids asked in groups of one index each (a batch asks each of a
    day's earlier-copy indices for all of the day's ids): the same request, the pairs in the
    order asked, without building a tuple and a dict per pair (docs/decisions/0280); the
    answer is read into untracked structs, not a dict per pair (docs/decisions/0300)."""
    body = mget_body(groups)
    if body is None:
        return []
    params = {"_source": "false", "filter_path": FILTER}
    answer = request_typed(client, "POST", "/_mget", _Docs, params=params, body=body)
    return [(d.index, d.id) for d in answer.docs if d.found]


def mget_body(groups: Iterable[tuple[str, Sequence[str]]]) -> bytes | None:
    """``{"docs":[{"_index":…,"_id":…},…]}`` for every id of every group, in order; None when
    there is none. Bytes as orjson writes that object (every string through orjson, so any
    id is escaped right); bytes pass opensearch-py's serializer untouched (its stdlib json
    encoder costs ≈ 1 µs per entry)."""
    parts: list[bytes] = []
    for index, ids in groups:
        if ids:
            head = b'{"_index":%s,"_id":' % orjson.dumps(index)
            parts.append(head + (b"}," + head).join(map(orjson.dumps, ids)) + b"}")
    if not parts:
        return None
    return b'{"docs":[%s]}' % b",".join(parts)
