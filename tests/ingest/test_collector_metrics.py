"""The collector's metrics, read over HTTP from its /metrics: answers by status, records
accepted or refused by reason, latency; no merchant id or key ever becomes a label."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch
from prometheus_client.parser import text_string_to_metric_families

from ingest.collector import create_app
from ingest.sinks import kafka_producer
from pulse.keystore import create_key, lookup_hash
from pulse.naming import Names
from pulse.settings import Settings

EVENT = {"event_type": "page_view", "occurred_at": "2026-11-24T10:00:00Z"}


@pytest.fixture
def collector(settings: Settings, topics: Names, os_client: OpenSearch) -> Iterator[TestClient]:
    assert settings.kafka_bootstrap
    producer = kafka_producer(settings.kafka_bootstrap)
    app = create_app(producer, topics.topic_raw, lambda d: lookup_hash(os_client, topics, d))
    with TestClient(app) as client:
        yield client
    producer.close()


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_answers_and_records_are_counted(
    collector: TestClient, os_client: OpenSearch, topics: Names
) -> None:
    key = create_key(os_client, topics, "m77", False, "metrics test", write=True)[0]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    batch = [
        {**EVENT, "event_id": "a", "merchant_id": "m77"},
        {**EVENT, "event_id": "b", "merchant_id": "m78"},
        {**EVENT, "event_id": "c", "merchant_id": "m77"},
    ]
    assert (
        collector.post("/events", content=orjson.dumps(batch), headers=headers).status_code == 200
    )
    assert collector.post("/events", content=b"[]", headers={}).status_code == 401

    seen = samples(collector)
    records = "pulse_collector_records_total"
    assert seen[(records, (("outcome", "accepted"), ("reason", "")))] == 2
    assert seen[(records, (("outcome", "refused"), ("reason", "merchant_not_allowed")))] == 1
    assert seen[(records, (("outcome", "refused"), ("reason", "unauthenticated")))] == 1
    assert seen[("pulse_collector_requests_total", (("status", "200"),))] == 1
    assert seen[("pulse_collector_requests_total", (("status", "401"),))] == 1
    assert seen[("pulse_collector_request_seconds_count", ())] == 2
    text = collector.get("/metrics").text
    assert "m77" not in text and "m78" not in text and key not in text
