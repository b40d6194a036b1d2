"""Golden Fluent Bit messages through the real indexer, on the session's real engines.

The exact bytes `out_kafka` writes (tests/ingest/golden/) are produced to the test's own
`events.raw`; the indexer must index each valid one as its expected event and dead-letter the
invalid one with its reason and the original bytes.
"""

from __future__ import annotations

import threading
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from opensearchpy import OpenSearch

from indexer.consumer import Indexer
from ingest.contract import document_id
from pulse.engines import wait_until
from pulse.naming import Names
from pulse.settings import Settings
from tests.ingest.test_fluent_bit_golden import CASES

# Event field -> raw document field, where the names differ.
DOC_FIELD = {"occurred_at_ms": "occurred_at", "shipped_at_ms": "shipped_at"}


def _golden() -> tuple[list[bytes], list[dict[str, Any]]]:
    messages = [m for case in CASES for m in case.messages]
    expected = [e for case in CASES for e in case.expect]
    return messages, expected


def _run_indexer(settings: Settings, bootstrap: str, count: int) -> None:
    assert settings.opensearch_url
    indexer = Indexer(settings, settings.opensearch_url, bootstrap)
    stop = threading.Event()
    thread = threading.Thread(target=indexer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: indexer.settled >= count, 60), "indexer did not settle"
    finally:
        stop.set()
        thread.join(60)


def _indexed(client: OpenSearch, names: Names, expected: dict[str, Any]) -> dict[str, Any]:
    doc_id = document_id(expected["merchant_id"], expected["event_id"])
    client.indices.refresh(index=names.raw_pattern)
    hits = client.search(index=names.raw_pattern, body={"query": {"ids": {"values": [doc_id]}}})
    found = hits["hits"]["hits"]
    assert len(found) == 1, f"{expected['event_id']}: {len(found)} documents"
    source: dict[str, Any] = found[0]["_source"]
    return source


def _dead_letters(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    try:
        letters = []
        for record in consumer:
            letters.append(record)
            if len(letters) >= count:
                break
        return letters
    finally:
        consumer.close()


def test_golden_messages_through_the_indexer(
    settings: Settings, topics: Names, os_client: OpenSearch, kafka_bootstrap: str
) -> None:
    # The golden events are from 2025: keep them inside the raw retention whatever today is.
    settings = settings.model_copy(update={"raw_retention_days": 36500})
    messages, expected = _golden()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for raw in messages:
        producer.send(topics.topic_raw, value=raw)
    producer.flush()
    producer.close()

    _run_indexer(settings, kafka_bootstrap, len(messages))

    rejected = [m for m, e in zip(messages, expected, strict=True) if "rejection" in e]
    for want in (e for e in expected if "rejection" not in e):
        doc = _indexed(os_client, topics, want)
        for field, value in want.items():
            default: Any = {} if field == "attributes" else None  # empty ones are not stored
            stored = doc.get(DOC_FIELD.get(field, field), default)
            assert stored == value, f"{want['event_id']}.{field}"
    letters = _dead_letters(kafka_bootstrap, topics.topic_dlq, len(rejected))
    assert [letter.value for letter in letters] == rejected, "original bytes, unchanged"
    reasons = [dict(letter.headers)["pulse.reason"].decode() for letter in letters]
    assert reasons == [e["rejection"] for e in expected if "rejection" in e]
