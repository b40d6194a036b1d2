"""Record batches written byte for byte: a corrupt CRC, an unknown codec.

A real broker path: the batch is built with kafka-python's own record builder, altered, and
sent in a ProduceRequest on kafka-python's network client (no producer, which would refuse to
send it). The embedded broker stores such batches as given, as a broker with a faulty disk or
a buggy client library would hand them out.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import crc32c
from kafka.net.compat import KafkaNetClient
from kafka.protocol.producer import ProduceRequest
from kafka.record.default_records import DefaultRecordBatchBuilder

CRC_AT, ATTRIBUTES_AT = 17, 21  # v2 batch header: base offset 8, length 4, epoch 4, magic 1


def record_batch(values: list[bytes], keys: list[bytes] | None = None) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    now = int(time.time() * 1000)
    for i, value in enumerate(values):
        builder.append(i, timestamp=now, key=keys[i] if keys else None, value=value, headers=[])
    return bytes(builder.build())


def corrupt_crc(batch: bytes) -> bytes:
    out = bytearray(batch)
    out[CRC_AT] ^= 0xFF
    return bytes(out)


def with_codec(batch: bytes, codec: int) -> bytes:
    """The codec bits of the attributes set to ``codec`` (the records are left as they are:
    1 = gzip makes a batch whose payload is not gzip; 5-7 = codecs no client knows), with a
    valid CRC."""
    out = bytearray(batch)
    (attributes,) = struct.unpack_from(">h", out, ATTRIBUTES_AT)
    struct.pack_into(">h", out, ATTRIBUTES_AT, (attributes & ~0x07) | codec)
    struct.pack_into(">I", out, CRC_AT, crc32c.crc32c(bytes(out[ATTRIBUTES_AT:])))
    return bytes(out)


def produce_raw(bootstrap: str, topic: str, partition: int, batch: bytes) -> int:
    """Append ``batch`` as is; returns the base offset the broker assigned."""
    answer = produce_raw_answer(bootstrap, topic, partition, batch)
    assert answer.error_code == 0, answer
    return int(answer.base_offset)


def produce_raw_answer(bootstrap: str, topic: str, partition: int, batch: bytes) -> Any:
    """The broker's answer (a PartitionProduceResponse) to appending ``batch`` as is."""
    client = KafkaNetClient(bootstrap_servers=bootstrap, client_id="pulse-test-raw")
    try:
        client.check_version()
        brokers = list(client.cluster.brokers())
        assert len(brokers) == 1, "the embedded broker is one node"
        topic_data = ProduceRequest.TopicProduceData
        data = topic_data.PartitionProduceData(index=partition, records=batch)
        request = ProduceRequest(
            transactional_id=None, acks=-1, timeout_ms=10_000,
            topic_data=[topic_data(name=topic, partition_data=[data])],
            min_version=3, max_version=9,
        )  # fmt: skip
        response = client.send_and_receive(brokers[0].node_id, request)
    finally:
        client.close()
    return response.responses[0].partition_responses[0]
