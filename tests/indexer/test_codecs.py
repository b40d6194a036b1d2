"""Every Kafka codec, from producers that are not ours, through the real indexer.

librdkafka is configured from the ``rdkafka.*`` keys of our Fluent Bit YAML (idempotent,
acks=all, lz4), then with each other codec; kafka-python produces with each codec. Shipper
re-sends (the same event produced again) and the generator's duplicates are included: every
distinct event is one document, and the sums match.
"""

from __future__ import annotations

from typing import Any

import pytest
from opensearchpy import OpenSearch

from indexer.codecs import missing_codecs
from ingest.loadgen import DAY_MS, Generator, LoadSpec, now_ms
from pulse.engines import wait_until
from pulse.naming import Names
from pulse.settings import Settings
from tests.indexer.conftest import (
    FAST,
    distinct_events,
    expected_totals,
    indexed_totals,
    indexer_thread,
)
from tests.ingest.shippers import (
    CODECS,
    fluent_bit_producer,
    kafka_python_producer,
    produce_kafka_python,
    produce_librdkafka,
    rdkafka_properties,
)


def _events(count: int, seed: int) -> list[dict[str, Any]]:
    gen = Generator(LoadSpec(merchants=20, seed=seed, duplicate_rate=0.05))
    now = now_ms()
    events = list(gen.stream(gen.events(count, now - DAY_MS, now)))
    return events + _disputes(events)


def _disputes(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A dispute for every 20th payment: the generator's 0.8 % would give none in a few hundred."""
    payments = [e for e in events if e["event_type"] == "payment"]
    out = []
    for payment in payments[::20]:
        dispute = {k: v for k, v in payment.items() if k not in ("status", "decline_code")}
        out.append(
            {**dispute, "event_id": f"{payment['event_id']}-dispute", "event_type": "dispute"}
        )
    return out


def _index_all(settings: Settings, sent: int) -> None:
    with indexer_thread(settings.model_copy(update=FAST)) as indexer:
        assert wait_until(lambda: indexer.settled >= sent, 90, 0.1), (indexer.settled, sent)
        assert indexer.settled == sent


def test_every_codec_is_decodable_here() -> None:
    assert missing_codecs() == []


def test_fluent_bit_rdkafka_settings_are_what_we_test() -> None:
    props = rdkafka_properties()
    assert props["compression.codec"] == "lz4"
    assert props["enable.idempotence"] == "true"
    assert props["request.required.acks"] == "all"


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "zstd"], ids=lambda c: c or "lz4-yaml")
def test_librdkafka_batches_are_indexed_once(
    codec: str | None, settings: Settings, topics: Names, os_client: OpenSearch
) -> None:
    assert settings.kafka_bootstrap
    events = _events(400, seed=11)
    resent = events[:60]  # a shipper re-sends a chunk it got no answer for
    producer = fluent_bit_producer(settings.kafka_bootstrap, codec)
    produce_librdkafka(producer, topics.topic_raw, events)
    produce_librdkafka(producer, topics.topic_raw, resent)
    _index_all(settings, len(events) + len(resent))
    expected = expected_totals(distinct_events(events))
    _covers_the_newer_fields(expected)
    assert indexed_totals(os_client, topics) == expected


def _covers_the_newer_fields(expected: dict[str, Any]) -> None:
    """The shipped events carry every newer contract field, or the comparison proves little."""
    assert expected["event_type"].get("dispute", 0) > 0, expected["event_type"]
    assert len(expected["decline_code"]) >= 3, expected["decline_code"]
    assert len(expected["currency"]) >= 2, expected["currency"]


def test_kafka_python_batches_in_every_codec_are_indexed_once(
    settings: Settings, topics: Names, os_client: OpenSearch
) -> None:
    assert settings.kafka_bootstrap
    events = _events(800, seed=12)
    chunks = [events[i::4] for i in range(4)]
    sent = 0
    for codec, chunk in zip(CODECS, chunks, strict=True):
        producer = kafka_python_producer(settings.kafka_bootstrap, codec)
        produce_kafka_python(producer, topics.topic_raw, chunk)
        produce_kafka_python(producer, topics.topic_raw, chunks[0][:25])  # re-sent in codec
        producer.close()
        sent += len(chunk) + 25
    _index_all(settings, sent)
    expected = expected_totals(distinct_events(events))
    _covers_the_newer_fields(expected)
    assert indexed_totals(os_client, topics) == expected
