"""The collector accepts what Fluent Bit's in_http accepts and writes out_kafka's json shape."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition

from ingest.collector import create_app
from ingest.contract import Event, parse_message
from ingest.sinks import kafka_producer
from pulse.naming import Names
from pulse.settings import Settings

EVENT = {
    "event_id": "c-1",
    "merchant_id": "m1",
    "event_type": "page_view",
    "occurred_at": "2026-11-24T10:00:00Z",
}


@pytest.fixture
def client(settings: Settings, topics: Names) -> Iterator[TestClient]:
    assert settings.kafka_bootstrap
    producer = kafka_producer(settings.kafka_bootstrap)
    with TestClient(create_app(producer, topics.topic_raw)) as test_client:
        yield test_client
    producer.close()


def read_all(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    values: list[bytes] = []
    for _ in range(10):
        for records in consumer.poll(500).values():
            values += [r.value for r in records]
    consumer.close()
    return values


def test_object_and_array_become_records(
    client: TestClient, settings: Settings, topics: Names
) -> None:
    assert client.post("/events", content=orjson.dumps(EVENT)).status_code == 201
    batch = [{**EVENT, "event_id": f"c-{i}"} for i in range(2, 5)]
    assert client.post("/app.events", content=orjson.dumps(batch)).status_code == 201
    assert settings.kafka_bootstrap
    values = read_all(settings.kafka_bootstrap, topics.topic_raw, settings.raw_partitions)
    assert len(values) == 4
    assert all(v.startswith(b'{"@timestamp":"') for v in values)
    parsed = [parse_message(v) for v in values]
    assert all(isinstance(p, Event) for p in parsed)
    assert sorted(p.event_id for p in parsed if isinstance(p, Event)) == [
        "c-1", "c-2", "c-3", "c-4",
    ]  # fmt: skip


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b"[{}, 3]"])
def test_bad_bodies_are_refused_with_400(client: TestClient, body: bytes) -> None:
    response = client.post("/events", content=body)
    assert response.status_code == 400
    assert response.text.startswith("error:")


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
