"""An undecodable record batch stops its own partition, not the indexer (decision 0110).

Real batches on the real broker: a corrupt CRC, a batch marked gzip whose payload is not
(valid CRC) and, in a
separate indexer process, lz4 batches from librdkafka with the lz4 library missing. The other
partitions keep flowing; the stopped partition is reported (log, metrics, the blocked-batch
document) and never committed past; the operator's skip dead-letters the batch's bytes and
the partition flows again; installing the library and restarting decodes it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer
from opensearchpy import OpenSearch

from indexer import deadletters as dl
from indexer.consumer import Indexer
from indexer.undecodable import BLOCKED, RESOLVED, SKIPPED, BlockedBatches, request_skip
from ingest.contract import to_kafka_message
from ingest.loadgen import DAY_MS, Generator, LoadSpec, now_ms
from pulse.engines import free_port, wait_until
from pulse.naming import Names
from pulse.settings import Settings
from tests.indexer.conftest import (
    FAST,
    IndexerProcess,
    committed,
    indexed_totals,
    indexer_thread,
    read_dlq,
)
from tests.indexer.rawbatches import (
    corrupt_crc,
    produce_raw,
    produce_raw_answer,
    record_batch,
    with_codec,
)
from tests.ingest.shippers import fluent_bit_producer, produce_librdkafka

PARTITIONS = 4


def _events(count: int, seed: int) -> list[dict[str, Any]]:
    gen = Generator(LoadSpec(merchants=10, seed=seed))  # no duplicates: counts per partition
    now = now_ms()
    return list(gen.stream(gen.events(count, now - DAY_MS, now)))


def _send(bootstrap: str, topic: str, by_partition: dict[int, list[dict[str, Any]]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for partition, events in by_partition.items():
        for e in events:
            producer.send(topic, value=to_kafka_message(e), partition=partition)
    producer.flush()
    producer.close()


def _split(events: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    return {p: events[p::PARTITIONS] for p in range(PARTITIONS)}


def _sample(indexer: Indexer, name: str, partition: int) -> float | None:
    value = indexer.metrics.registry.get_sample_value(name, {"partition": str(partition)})
    return None if value is None else float(value)


def test_bad_batches_stop_only_their_partition_until_skipped(
    settings: Settings, topics: Names, os_client: OpenSearch, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap, topic = settings.kafka_bootstrap or "", topics.topic_raw
    before, after = _split(_events(200, seed=31)), _split(_events(200, seed=32))
    _send(bootstrap, topic, before)
    good = record_batch([b'{"not": "decodable"}'] * 3)
    crc_batch, codec_batch = corrupt_crc(good), with_codec(good, 1)
    crc_at = produce_raw(bootstrap, topic, 1, crc_batch)
    codec_at = produce_raw(bootstrap, topic, 2, codec_batch)
    assert (crc_at, codec_at) == (len(before[1]), len(before[2]))
    _send(bootstrap, topic, after)
    flowing = sum(len(v) for v in before.values()) + len(after[0]) + len(after[3])
    caplog.set_level(logging.ERROR, logger="pulse.indexer")

    with indexer_thread(settings.model_copy(update=FAST)) as ix:
        assert wait_until(lambda: ix.settled >= flowing and set(ix.blocked) == {1, 2}, 60, 0.1)
        assert indexed_totals(os_client, topics)["count"] == flowing  # 0 and 3 flowed
        for partition, at in ((1, crc_at), (2, codec_at)):
            assert _sample(ix, "pulse_indexer_undecodable_batches_total", partition) == 1
            assert _sample(ix, "pulse_indexer_partition_blocked", partition) == 1
            assert ix.blocked[partition].offset == at
        group = topics.group(settings.indexer_group)
        assert wait_until(lambda: committed(bootstrap, group, topic, 4).get(0) == 100, 20)
        assert committed(bootstrap, group, topic, 4) == {0: 100, 1: crc_at, 2: codec_at, 3: 100}
        logged = {(r.partition, r.offset): r.error for r in caplog.records if hasattr(r, "error")}
        assert "CorruptRecordError" in logged[(1, crc_at)]
        assert "Not a gzipped file" in logged[(2, codec_at)]
        store = BlockedBatches(os_client, topics)
        assert wait_until(lambda: len(store.all()) == 2, 10)
        assert {d["status"] for d in store.all()} == {BLOCKED}
        waiting = dl.stats(settings).blocked_batches  # what `pulse dlq stats` / status show
        assert sorted((d["partition"], d["offset"]) for d in waiting) == [
            (1, crc_at),
            (2, codec_at),
        ]

        assert request_skip(os_client, topics, topic, 1, crc_at) == BLOCKED  # the operator
        assert wait_until(lambda: ix.settled >= flowing + len(after[1]), 30, 0.1)
        assert _sample(ix, "pulse_indexer_partition_blocked", 1) == 0
        assert set(ix.blocked) == {2}  # the other bad batch waits for its own decision

    assert indexed_totals(os_client, topics)["count"] == flowing + len(after[1])
    statuses = {d["partition"]: d["status"] for d in store.all()}
    assert statuses == {1: SKIPPED, 2: BLOCKED}
    letters = read_dlq(bootstrap, topics.topic_dlq, 1)
    assert len(letters) == 1
    headers = {k: v.decode() for k, v in letters[0].headers}
    assert headers["pulse.reason"] == "undecodable_batch"
    assert (headers["pulse.partition"], headers["pulse.offset"]) == ("1", str(crc_at))
    assert headers["pulse.next_offset"] == str(crc_at + 3)
    assert letters[0].value[CRC_FROM:] == crc_batch[CRC_FROM:]  # the bytes as stored


CRC_FROM = 16  # the broker rewrites base offset and leader epoch; magic onwards is the batch


def test_the_broker_refuses_an_unknown_codec(settings: Settings, topics: Names) -> None:
    """Why no test feeds the indexer an unknown codec: the broker refuses the batch (so does
    Kafka, which validates compressed batches on append). Fails if that ever changes."""
    batch = with_codec(record_batch([b"{}"]), 5)
    answer = produce_raw_answer(settings.kafka_bootstrap or "", topics.topic_raw, 0, batch)
    assert answer.error_code != 0


def _hidden_lz4(tmp_path: Path) -> str:
    """A PYTHONPATH under which ``import lz4`` fails, as on a host without the library."""
    package = tmp_path / "nolz4" / "lz4"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('lz4 is not installed')\n")
    return str(package.parent)


def test_missing_codec_library_blocks_one_partition_until_installed(
    settings: Settings, topics: Names, os_client: OpenSearch, tmp_path: Path
) -> None:
    bootstrap, topic = settings.kafka_bootstrap or "", topics.topic_raw
    lz4_events = _events(300, seed=33)
    plain = _split(_events(120, seed=34))
    del plain[0]
    # Fluent Bit's own librdkafka settings (lz4), all into partition 0.
    produce_librdkafka(fluent_bit_producer(bootstrap), topic, lz4_events, partition=0)
    _send(bootstrap, topic, plain)
    port = free_port()
    env = os.environ.get("PYTHONPATH", "")
    s = settings.model_copy(update={**FAST, "indexer_metrics_port": port})
    path = os.pathsep.join(p for p in (_hidden_lz4(tmp_path), env) if p)
    without = IndexerProcess(s, tmp_path / "without.log", {"PYTHONPATH": path}, log_json=True)
    try:
        assert wait_until(lambda: _blocked_partitions(port) == {0}, 60, 0.2), without.log_text()
        assert "Libraries for lz4 compression codec not found" in without.log_text()
        flowing = sum(len(v) for v in plain.values())
        assert wait_until(lambda: indexed_totals(os_client, topics)["count"] >= flowing, 30, 0.3)
        assert without.proc.poll() is None  # alive: no crash, nothing for pulse up to restart
    finally:
        assert without.terminate() == 0, without.log_text()
    with_lz4 = IndexerProcess(s, tmp_path / "with.log")
    try:
        total = len(lz4_events) + sum(len(v) for v in plain.values())
        assert wait_until(lambda: indexed_totals(os_client, topics)["count"] >= total, 60, 0.3)
        store = BlockedBatches(os_client, topics)
        assert wait_until(lambda: {d["status"] for d in store.all()} == {RESOLVED}, 20, 0.3)
    finally:
        assert with_lz4.terminate() == 0, with_lz4.log_text()
    assert indexed_totals(os_client, topics)["count"] == total


def _metrics(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return ""


def _blocked_partitions(port: int) -> set[int]:
    out = set()
    for line in _metrics(port).splitlines():
        if line.startswith("pulse_indexer_partition_blocked{") and line.endswith(" 1.0"):
            out.add(int(line.split('partition="')[1].split('"')[0]))
    return out
