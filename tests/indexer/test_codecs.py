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
    return list(gen.stream(gen.events(count, now - DAY_MS, now)))


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
    assert indexed_totals(os_client, topics) == expected_totals(distinct_events(events))


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
    assert indexed_totals(os_client, topics) == expected_totals(distinct_events(events))
