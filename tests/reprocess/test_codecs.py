"""The reprocess replay (its own group-less consumer) reads batches in every codec: events
shipped by librdkafka as Fluent Bit configures it (lz4) and by kafka-python in gzip, snappy
and zstd, re-sends included, are rebuilt exactly once into the new generation."""

from __future__ import annotations

from reprocess import runs
from reprocess.service import Context
from tests.ingest.shippers import (
    fluent_bit_producer,
    kafka_python_producer,
    produce_kafka_python,
    produce_librdkafka,
)
from tests.reprocess.conftest import ALL, DAYS, live_write, make_events, oracle, reprocess, served


def test_replay_reads_every_codec(ctx: Context) -> None:
    bootstrap, topic = ctx.kafka_bootstrap, ctx.names.topic_raw
    events = make_events(120, ALL, seed=21)
    chunks = [events[i::4] for i in range(4)]
    produce_librdkafka(fluent_bit_producer(bootstrap), topic, chunks[0] + chunks[0][:20])
    for codec, chunk in zip(("gzip", "snappy", "zstd"), chunks[1:], strict=True):
        producer = kafka_python_producer(bootstrap, codec)
        produce_kafka_python(producer, topic, chunk + chunk[:20])  # shipper re-sends
        producer.close()
    live_write(ctx.client, ctx.settings, ctx.names, events)  # the buggy live generation

    run = reprocess(ctx).apply()

    assert run.phase == runs.SWITCHED, run.report
    assert run.stats["read"] == len(events) + 80
    after, expected = served(ctx.client, ctx.names, DAYS), oracle(events, DAYS)
    assert after.days == expected.days
