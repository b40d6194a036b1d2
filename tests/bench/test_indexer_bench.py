"""`pulse bench indexer`: its baseline bulks exactly the documents the indexer writes
(docs/decisions/0305). Behaviour, not speed: nothing here asserts how fast anything is."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from opensearchpy import OpenSearch

from bench import indexer as bench_indexer
from indexer import bulk, writer
from pulse.clients import Endpoints
from pulse.settings import Settings

STAMP = re.compile(rb',"ingested_at":\d+}$')


def _documents(bodies: list[bytes]) -> dict[str, tuple[str, bytes]]:
    """_id -> (index name without its namespace, document bytes without ingested_at), from
    the NDJSON bodies as sent; every document must carry the stamp, and no _id come twice."""
    out: dict[str, tuple[str, bytes]] = {}
    for body in bodies:
        lines = body.splitlines()
        assert len(lines) % 2 == 0
        for action, doc in zip(lines[::2], lines[1::2], strict=True):
            create = orjson.loads(action)["create"]
            assert STAMP.search(doc), doc
            assert create["_id"] not in out
            out[create["_id"]] = (create["_index"].split("-", 1)[1], STAMP.sub(b"}", doc))
    return out


def _capturing(into: list[bytes]) -> Callable[[OpenSearch, bytes, float], Any]:
    def send(client: OpenSearch, body: bytes, timeout_s: float) -> bulk.BulkAnswer:
        into.append(body)
        return bulk.send_bulk(client, body, timeout_s)

    return send


def test_the_baseline_bulks_the_indexers_own_documents(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = bench_indexer.generate(400, 2, seed=11)
    unique = {(e["merchant_id"], e["event_id"]) for e in events}
    assert len(unique) < len(events)  # duplicates are in the load, and left to the indexer
    sent: dict[str, list[bytes]] = {"baseline": [], "indexer": []}
    monkeypatch.setattr(bench_indexer, "send_bulk", _capturing(sent["baseline"]))
    monkeypatch.setattr(writer, "send_bulk", _capturing(sent["indexer"]))
    ep = Endpoints(settings.opensearch_url or "", settings.kafka_bootstrap or "")
    # Several batches, so the indexer's cross-batch first-copy check (the _mget) takes part.
    result = bench_indexer.measure(settings.model_copy(update={"bulk_max_docs": 150}), ep, events)

    baseline, indexed = _documents(sent["baseline"]), _documents(sent["indexer"])
    assert len(sent["baseline"]) == -(-len(unique) // 150)  # batches of bulk_max_docs
    assert len(baseline) == len(unique) == result["baseline_docs"] == result["indexed"]
    assert baseline == indexed  # same ids, day aliases and document bytes
    positions = {orjson.loads(doc)["kafka_partition"] for _, doc in baseline.values()}
    assert len(positions) > 1  # the positions are the messages' own, not a constant
    assert result["baseline_plain_s"] > 0 and result["ratio_plain"] > 0 and result["ratio"] > 0
