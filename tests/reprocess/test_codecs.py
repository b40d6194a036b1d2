"""The reprocess replay (its own group-less consumer) reads batches in every codec: events
shipped by librdkafka as Fluent Bit configures it (lz4) and by kafka-python in gzip, snappy
and zstd, re-sends included, are rebuilt exactly once into the new generation. A batch it
cannot decode stops the run (checkpointed) until the operator decides (decision 0110)."""

from __future__ import annotations

import dataclasses

import pytest

from indexer.undecodable import SKIP_REQUESTED, BlockedBatches
from reprocess import runs
from reprocess.replay import UndecodableBatch
from reprocess.service import Context, Resume
from tests.indexer.conftest import pulse_dlq
from tests.indexer.rawbatches import corrupt_crc, produce_raw, record_batch
from tests.ingest.shippers import (
    fluent_bit_producer,
    kafka_python_producer,
    produce_kafka_python,
    produce_librdkafka,
)
from tests.reprocess.conftest import (
    ALL,
    DAYS,
    live_write,
    make_events,
    oracle,
    reprocess,
    send,
    served,
)


def test_replay_reads_every_codec(ctx: Context) -> None:
    # The producers stamp messages with the wall clock, after the range's arrival window:
    # read the log to the head (window -1) so every batch goes through the sequential read.
    wide = ctx.settings.model_copy(update={"reprocess_late_window_s": -1})
    ctx = dataclasses.replace(ctx, settings=wide)
    bootstrap, topic = ctx.kafka_bootstrap, ctx.names.topic_raw
    events = make_events(120, ALL, seed=21)
    chunks = [events[i::4] for i in range(4)]
    shipped = chunks[0] + chunks[0][:20]
    at = produce_librdkafka(fluent_bit_producer(bootstrap), topic, shipped)
    for codec, chunk in zip(("gzip", "snappy", "zstd"), chunks[1:], strict=True):
        producer = kafka_python_producer(bootstrap, codec)
        shipped += chunk + chunk[:20]  # shipper re-sends
        at += produce_kafka_python(producer, topic, chunk + chunk[:20])
        producer.close()
    first = {}  # the live indexer keeps each event's first copy, with its position
    for event, position in zip(shipped, at, strict=True):
        first.setdefault(event["event_id"], position)
    positions = [first[e["event_id"]] for e in events]
    live_write(ctx.client, ctx.settings, ctx.names, events, positions)  # the buggy generation

    run = reprocess(ctx).apply()

    assert run.phase == runs.SWITCHED, run.report
    assert run.stats["read"] == len(events) + 80
    after, expected = served(ctx.client, ctx.names, DAYS), oracle(events, DAYS)
    assert after.days == expected.days


def test_replay_stops_at_an_undecodable_batch_until_the_operator_skips_it(ctx: Context) -> None:
    bootstrap, topic = ctx.kafka_bootstrap, ctx.names.topic_raw
    events = make_events(80, ALL, seed=22)
    positions = send(ctx.settings, ctx.names, events[:40])
    bad = corrupt_crc(record_batch([b'{"event_id": "lost"}'] * 2))
    at = produce_raw(bootstrap, topic, 0, bad)
    positions += send(ctx.settings, ctx.names, events[40:])
    live_write(ctx.client, ctx.settings, ctx.names, events, positions)

    with pytest.raises(UndecodableBatch) as stopped:
        reprocess(ctx).apply()
    assert (stopped.value.bad.partition, stopped.value.bad.offset) == (0, at)
    assert "pulse dlq skip-batch --partition 0" in str(stopped.value)
    skip = ["skip-batch", "--partition", "0", "--offset", str(at), "--yes"]
    assert "skip requested" in pulse_dlq(ctx.settings, *skip)  # the operator
    assert BlockedBatches(ctx.client, ctx.names).status(stopped.value.bad.key) == SKIP_REQUESTED

    run = Resume(ctx).apply()
    assert run.phase == runs.SWITCHED, run.report
    assert run.stats["skipped_batches"] == 1
    assert served(ctx.client, ctx.names, DAYS).days == oracle(events, DAYS).days
