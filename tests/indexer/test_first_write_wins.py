"""Same-day first-write-wins with duplicates that are NOT identical copies: a re-sent event
whose content changed (amount, status) never replaces the copy indexed first, whether the
second copy arrives in the same batch or in a later one (docs/decisions/0011)."""

from __future__ import annotations

from typing import Any

from opensearchpy import OpenSearch

from ingest.contract import to_kafka_message
from pulse.clock import DAY_MS, now_ms
from pulse.engines import wait_until
from pulse.naming import Names
from pulse.settings import Settings
from tests.indexer.conftest import FAST, indexer_thread
from tests.indexer.test_pipeline import _produce


def _payment(event_id: str, at_ms: int, amount: float, status: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "merchant_id": "m1",
        "event_type": "payment",
        "occurred_at": at_ms,
        "amount": amount,
        "status": status,
    }


def _stored(client: OpenSearch, names: Names, event_id: str) -> list[dict[str, Any]]:
    client.indices.refresh(index=names.raw_pattern)
    query = {"query": {"term": {"event_id": event_id}}, "size": 10}
    return [
        h["_source"] for h in client.search(index=names.raw_pattern, body=query)["hits"]["hits"]
    ]


def test_a_changed_duplicate_of_the_same_day_never_replaces_the_first_copy(
    settings: Settings, topics: Names, os_client: OpenSearch
) -> None:
    s = settings.model_copy(update=FAST)
    now = now_ms()
    at = max(now - now % DAY_MS, now - 3_600_000)  # today, in the past: one day for both
    first = [_payment("same-batch", at, 10.5, "succeeded"), _payment("later", at, 20.0, "failed")]
    same_batch_copy = _payment("same-batch", at + 1, 99.0, "failed")
    later_copy = _payment("later", at + 2, 77.0, "succeeded")
    bootstrap = s.kafka_bootstrap or ""
    _produce(bootstrap, topics.topic_raw, [to_kafka_message(e) for e in [*first, same_batch_copy]])

    with indexer_thread(s) as indexer:
        assert wait_until(lambda: indexer.settled >= 3, 60)
        _produce(bootstrap, topics.topic_raw, [to_kafka_message(later_copy)])  # a later batch
        assert wait_until(lambda: indexer.settled >= 4, 60)

    same = _stored(os_client, topics, "same-batch")
    later = _stored(os_client, topics, "later")
    assert len(same) == 1 and len(later) == 1  # one document per (merchant_id, event_id)
    assert (same[0]["amount_milli"], same[0]["status"]) == (10_500, "succeeded")
    assert (later[0]["amount_milli"], later[0]["status"]) == (20_000, "failed")
    assert same[0]["occurred_at"] == at and later[0]["occurred_at"] == at
