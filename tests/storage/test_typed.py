"""Engine answers read into untracked structs (storage/typed.py, docs/decisions/0300), against
the real engine: the same pairs and verdicts as the dict answers, nothing of an answer tracked
by the cyclic collector, and the transport's errors as before."""

from __future__ import annotations

import gc

import msgspec
import orjson
import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

from indexer.bulk import RESPONSE_FILTER, BadResponse, BulkAnswer, Verdict, send_bulk, verdicts
from pulse.naming import Names
from storage.copies import FILTER, mget_body, stored_copies, stored_in
from storage.typed import UnexpectedAnswer, request_typed


def _bulk_body(index: str, ids: list[str]) -> bytes:
    lines = []
    for doc_id in ids:
        lines.append(orjson.dumps({"create": {"_index": index, "_id": doc_id}}))
        lines.append(orjson.dumps({"n": doc_id}))
    return b"\n".join(lines) + b"\n"


def test_bulk_and_mget_answers_as_the_transport_reads_them_but_untracked(
    os_client: OpenSearch, names: Names
) -> None:
    index = f"{names.namespace}-typed-a"
    other = f"{names.namespace}-typed-b"
    os_client.indices.create(index=index)
    os_client.indices.create(index=other)
    first = send_bulk(os_client, _bulk_body(index, ["a", "b", "c"]), 10.0)
    assert isinstance(first, BulkAnswer)
    assert [r.verdict for r in verdicts(first, 3)] == [Verdict.CREATED] * 3
    body = _bulk_body(index, ["c", "d"])
    again = send_bulk(os_client, body, 10.0)
    as_dict = os_client.transport.perform_request(
        "POST", "/_bulk", body=_bulk_body(index, ["c", "e"]),
        params={"filter_path": RESPONSE_FILTER},
        headers={"content-type": "application/x-ndjson"},
    )  # fmt: skip
    assert [r.verdict for r in verdicts(again, 2)] == [Verdict.DUPLICATE, Verdict.CREATED]
    # the stock transport's dict form reads the same
    assert verdicts(again, 2) == verdicts(msgspec.convert(as_dict, BulkAnswer), 2)
    assert again.items is not None
    assert not any(gc.is_tracked(x) for x in (again, *again.items))
    with pytest.raises(BadResponse):
        verdicts(again, 3)

    asked = [(index, ["a", "zz", "d"]), (other, ["a"])]
    assert stored_in(os_client, asked) == [(index, "a"), (index, "d")]
    assert stored_copies(os_client, [(other, "a"), (index, "b")]) == [(index, "b")]
    raw = os_client.transport.perform_request(
        "POST", "/_mget", body=mget_body(asked), params={"_source": "false", "filter_path": FILTER}
    )
    assert [(d["_index"], d["_id"]) for d in raw["docs"] if d.get("found")] == stored_in(
        os_client, asked
    )


def test_errors_are_the_transports_and_an_unexpected_answer_is_refused(
    os_client: OpenSearch, names: Names
) -> None:
    missing = f"{names.namespace}-typed-missing"
    with pytest.raises(NotFoundError):  # a 404 raises as through the transport
        request_typed(os_client, "GET", f"/{missing}/_doc/x", BulkAnswer, params={}, body=b"")
    with pytest.raises(UnexpectedAnswer):  # JSON, but not of the asked shape
        request_typed(os_client, "GET", "/", _Needs, params={}, body=b"")


class _Needs(msgspec.Struct):
    no_such_field: int
