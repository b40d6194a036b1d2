"""indexer.fetching reads record batches into the same ``Origin`` values kafka-python's records
give through ``Origin.of``, and refuses what kafka-python refuses (docs/decisions/0300).

The reference is kafka-python's own ``PartitionRecords`` over the same bytes; the real-broker
paths (every codec from librdkafka and kafka-python, undecodable batches, rebalances) are the
indexer tests of this package, which run with ``OriginRecords`` installed."""

from __future__ import annotations

import gc
import struct
from typing import Any

import crc32c
import pytest
from kafka import KafkaConsumer
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.record import MemoryRecords
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.serializer import Deserializer
from kafka.structs import TopicPartition

from indexer.consumer import consumer_for
from indexer.fetching import OriginRecords, install
from indexer.model import Origin
from indexer.undecodable import locate
from pulse.naming import names_for
from pulse.settings import Settings

TP = TopicPartition("events.raw", 3)


class StringDeserializer(Deserializer):  # type: ignore[misc]
    def deserialize(self, topic: str, headers: Any, data: bytes) -> str:
        return data.decode()


NOW = 1_780_000_000_000


def _batch(
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
    codec: int = 0,
    log_append: bool = False,
    step: int = 1,
    base_offset: int = 0,
) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec, is_transactional=False, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 24,
    )  # fmt: skip
    for i, (key, value, headers) in enumerate(records):
        # timestamps around NOW in both directions: negative deltas are zigzag varints
        builder.append(i * step, timestamp=NOW + (i * 37) % 5000 - 2500, key=key, value=value,
                       headers=headers)  # fmt: skip
    out = bytearray(builder.build())
    struct.pack_into(">q", out, 0, base_offset)
    if log_append:  # the timestamp-type bit; the CRC covers the attributes, so recompute it
        (attributes,) = struct.unpack_from(">h", out, 21)
        struct.pack_into(">h", out, 21, attributes | 0x08)
        struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[21:])))
    return bytes(out)


def _take(cls: Any, data: bytes, fetch_offset: int = 0) -> list[Any]:
    part = cls(fetch_offset, TP, MemoryRecords(data), None, None, True, on_drain=lambda _: None)
    return list(part.take())


def _reference(data: bytes, fetch_offset: int = 0) -> list[Origin]:
    return [Origin.of(r) for r in _take(Fetcher.PartitionRecords, data, fetch_offset)]


def _mixed(count: int, value_size: int) -> list[tuple[bytes | None, bytes | None, Any]]:
    out: list[tuple[bytes | None, bytes | None, Any]] = []
    for i in range(count):
        key = None if i % 3 == 0 else f"key-{i}".encode()
        value = None if i % 11 == 5 else (b"v%d-" % i) * (value_size // 4 + i % 7)
        headers = [] if i % 4 else [("pulse.source", b"fb"), ("nothing", None), ("é", b"\x00")]
        out.append((key, value, headers))
    return out


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4])  # none, gzip, snappy, lz4, zstd
def test_the_same_origins_as_kafka_python_in_every_codec(codec: int) -> None:
    # Sizes across the varint widths: one byte (< 64), two (< 8192), three and more.
    for count, value_size, step in ((5, 8, 1), (300, 200, 1), (40, 20_000, 500)):
        data = _batch(_mixed(count, value_size), codec, step=step, base_offset=1_234_567)
        mine = _take(OriginRecords, data)
        assert mine == _reference(data)
        assert all(type(r) is Origin for r in mine)
        assert [r.offset for r in mine] == [1_234_567 + i * step for i in range(count)]


def test_log_append_time_and_several_batches_and_a_fetch_from_inside_a_batch() -> None:
    first = _batch(_mixed(30, 50), log_append=True, base_offset=100)
    second = _batch(_mixed(20, 50), codec=3, base_offset=130)
    data = first + second
    assert _take(OriginRecords, data) == _reference(data)
    assert {r.timestamp for r in _take(OriginRecords, first)} == {NOW + (29 * 37) % 5000 - 2500}
    # A fetch at an offset inside the first batch starts there, as kafka-python does.
    assert _take(OriginRecords, data, 117) == _reference(data, 117)
    assert _take(OriginRecords, data, 117)[0].offset == 117


def test_the_position_after_a_partial_take_and_after_the_last_batch() -> None:
    data = _batch(_mixed(10, 50), base_offset=40) + _batch(_mixed(10, 50), base_offset=50)
    mine = OriginRecords(0, TP, MemoryRecords(data), None, None, True, on_drain=lambda _: None)
    theirs = Fetcher.PartitionRecords(
        0, TP, MemoryRecords(data), None, None, True, on_drain=lambda _: None
    )
    for n in (3, 9, 100):
        assert mine.take(n) == [Origin.of(r) for r in theirs.take(n)]
        assert mine.next_fetch_offset == theirs.next_fetch_offset
    assert mine.next_fetch_offset == 60
    assert mine.records_read == theirs.records_read == 20  # fetch metrics (counted per batch)
    assert not mine and not theirs  # drained: both handed their batches back


def test_a_malformed_record_is_refused_like_kafka_python_and_located() -> None:
    good = bytearray(_batch(_mixed(6, 30)))
    assert good[61] < 0x7E  # the first record's length: a one-byte varint
    good[61] += 2  # its length no longer matches its fields
    struct.pack_into(">I", good, 17, crc32c.crc32c(bytes(good[21:])))
    data = bytes(good)
    with pytest.raises(CorruptRecordError):
        _take(Fetcher.PartitionRecords, data)
    with pytest.raises(CorruptRecordError) as raised:
        _take(OriginRecords, data)
    bad = locate(raised.value)  # decision 0110 still finds the batch in the traceback
    assert bad is not None
    assert (bad.topic, bad.partition, bad.offset, bad.next_offset) == (TP.topic, 3, 0, 6)


def test_a_corrupt_crc_is_refused_and_located() -> None:
    data = bytearray(_batch(_mixed(4, 30), base_offset=77))
    data[17] ^= 0xFF
    with pytest.raises(CorruptRecordError) as raised:
        _take(OriginRecords, bytes(data))
    bad = locate(raised.value)
    assert bad is not None and (bad.offset, bad.next_offset) == (77, 81)


def test_origins_are_untracked_by_the_collector() -> None:
    data = _batch(_mixed(8, 30))
    assert not any(gc.is_tracked(r) for r in _take(OriginRecords, data))


def test_the_indexer_consumer_fetches_origins_and_deserializers_are_refused(
    settings: Settings,
) -> None:
    consumer = consumer_for(settings, settings.kafka_bootstrap or "", names_for(settings))
    try:
        assert consumer._fetcher.PartitionRecords is OriginRecords
    finally:
        consumer.close(autocommit=False, timeout_ms=0)
    other = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, value_deserializer=StringDeserializer()
    )
    try:
        with pytest.raises(ValueError, match="no deserializers"):
            install(other)
        assert other._fetcher.PartitionRecords is Fetcher.PartitionRecords
    finally:
        other.close(timeout_ms=0)
