"""The indexer's fetched records, read straight into ``Origin`` structs (docs/decisions/0300).

kafka-python 3.0.12 turns every record of a fetched batch into a ``DefaultRecord`` (eight
``decode_varint`` calls, properties, a slotted object) and then a ``ConsumerRecord`` (a
13-field named tuple, two deserializer calls, header sizes): ≈ 7.7 µs per record in pure
Python, as much as the indexer's own decoding of the event, and every ``ConsumerRecord``
waiting in the backlog is tracked by the cyclic garbage collector. The indexer reads six of
those fields and converts them into an ``Origin`` anyway (``Origin.of``).

``install(consumer)`` gives one consumer's fetcher ``OriginRecords`` for its
``PartitionRecords``: the same batch-level handling as kafka-python's (CRC check, aborted
transactions, control batches, the offset to fetch next, fetch metrics, exceptions raised
from a frame named ``_unpack_records`` with ``self`` and ``batch`` locals, which
``indexer.undecodable.locate`` reads, decision 0110), but a v2 batch's records are read by
one loop into ``Origin`` structs (untracked by the collector, decision 0280) that
``Origin.of`` passes through. Record formats before v2 (magic 0/1) take kafka-python's own
path. Only ``KafkaConsumer`` objects without deserializers can be given it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kafka.errors as errors
from kafka import KafkaConsumer
from kafka.consumer.fetcher import Fetcher
from kafka.protocol.consumer import IsolationLevel
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.util import decode_varint

from indexer.model import Origin

LOG_APPEND_TIME = DefaultRecordBatch.LOG_APPEND_TIME


def install(consumer: KafkaConsumer) -> None:
    """Make ``consumer`` hand out ``Origin`` structs instead of ``ConsumerRecord``s."""
    fetcher: Any = consumer._fetcher  # no public hook: kafka-python is pinned (3.0.12)
    config = fetcher.config
    if config["key_deserializer"] is not None or config["value_deserializer"] is not None:
        raise ValueError("OriginRecords reads raw bytes: the consumer must have no deserializers")
    fetcher.PartitionRecords = OriginRecords  # this consumer's fetcher only


def read_batch(batch: Any, topic: str, partition: int) -> list[Origin]:
    """Every record of a decompressed v2 ``DefaultRecordBatch`` as an ``Origin``, with what
    kafka-python's ``DefaultRecordBatch._read_msg`` and ``__next__`` check: the same values
    (a null value becomes ``b""`` as in ``Origin.of``), ``CorruptRecordError`` for a record
    whose length does not match its fields, a negative header count, a negative header key
    length, a truncated or malformed buffer or bytes left after the last record. Each
    record's ``size_in_bytes`` (its length field) is added to the batch's tally at
    ``OriginRecords``. Varints of one or two bytes (nearly all) are read inline."""
    buf = bytes(batch._buffer)  # one copy here; slices of bytes are then bytes (one copy each)
    pos = batch._pos
    base = batch.base_offset
    if batch.timestamp_type == LOG_APPEND_TIME:
        first_ts, delta_counts = batch.max_timestamp, False
    else:
        first_ts, delta_counts = batch.first_timestamp, True
    out: list[Origin] = []
    append = out.append
    try:
        for _ in range(batch._num_records):
            b = buf[pos]
            if b < 0x80:
                length, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif buf[pos + 1] < 0x80:
                b = (b & 0x7F) | (buf[pos + 1] << 7)
                length, pos = (b >> 1) ^ -(b & 1), pos + 2
            else:
                length, pos = decode_varint(buf, pos)
            start = pos
            if buf[pos] < 0x80:  # attributes (unused, as in kafka-python)
                pos += 1
            else:
                _, pos = decode_varint(buf, pos)
            b = buf[pos]
            if b < 0x80:
                ts_delta, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif buf[pos + 1] < 0x80:
                b = (b & 0x7F) | (buf[pos + 1] << 7)
                ts_delta, pos = (b >> 1) ^ -(b & 1), pos + 2
            else:
                ts_delta, pos = decode_varint(buf, pos)
            b = buf[pos]
            if b < 0x80:
                offset_delta, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif buf[pos + 1] < 0x80:
                b = (b & 0x7F) | (buf[pos + 1] << 7)
                offset_delta, pos = (b >> 1) ^ -(b & 1), pos + 2
            else:
                offset_delta, pos = decode_varint(buf, pos)
            b = buf[pos]
            if b < 0x80:
                key_len, pos = (b >> 1) ^ -(b & 1), pos + 1
            else:
                key_len, pos = decode_varint(buf, pos)
            if key_len >= 0:
                key: bytes | None = buf[pos : pos + key_len]
                pos += key_len
            else:
                key = None
            b = buf[pos]
            if b < 0x80:
                value_len, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif buf[pos + 1] < 0x80:
                b = (b & 0x7F) | (buf[pos + 1] << 7)
                value_len, pos = (b >> 1) ^ -(b & 1), pos + 2
            else:
                value_len, pos = decode_varint(buf, pos)
            if value_len >= 0:
                value = buf[pos : pos + value_len]
                pos += value_len
            else:
                value = b""
            b = buf[pos]
            if b < 0x80:
                header_count, pos = (b >> 1) ^ -(b & 1), pos + 1
            else:
                header_count, pos = decode_varint(buf, pos)
            if header_count:
                headers, pos = _headers(buf, pos, header_count)
            else:
                headers = ()
            if pos - start != length:
                raise errors.CorruptRecordError(
                    f"Invalid record size: expected to read {length} bytes in record "
                    f"payload, but instead read {pos - start}"
                )
            timestamp = first_ts + ts_delta if delta_counts else first_ts
            append(Origin(topic, partition, base + offset_delta, timestamp, key, value, headers))
    except (ValueError, IndexError) as err:  # as DefaultRecordBatch.__next__ reports them
        raise errors.CorruptRecordError(f"Found invalid record structure: {err!r}") from err
    if pos != len(buf):
        raise errors.CorruptRecordError(
            f"{len(buf) - pos} unconsumed bytes after all records consumed"
        )
    batch._pos = pos
    batch._next_record_index = batch._num_records
    return out


def _headers(buf: bytes, pos: int, count: int) -> tuple[tuple[tuple[str, Any], ...], int]:
    if count < 0:
        raise errors.CorruptRecordError(f"Found invalid number of record headers {count}")
    headers: list[tuple[str, Any]] = []
    for _ in range(count):
        key_len, pos = decode_varint(buf, pos)
        if key_len < 0:
            raise errors.CorruptRecordError(f"Invalid negative header key size {key_len}")
        name = buf[pos : pos + key_len].decode("utf-8")
        pos += key_len
        value_len, pos = decode_varint(buf, pos)
        if value_len >= 0:
            value: bytes | None = buf[pos : pos + value_len]
            pos += value_len
        else:
            value = None
        headers.append((name, value))
    return tuple(headers), pos


class OriginRecords(Fetcher.PartitionRecords):  # type: ignore[misc]
    """kafka-python's ``PartitionRecords`` (3.0.12) with v2 records read by ``read_batch``.

    ``_unpack_records`` is kafka-python's, line for line, except the per-record loop of a
    v2 batch; its name and its ``self``/``batch`` locals are what decision 0110's ``locate``
    finds in a traceback, so they stay."""

    def _unpack_records(
        self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any
    ) -> Iterator[Any]:
        try:
            batch = records.next_batch()
            last_batch = None
            while batch is not None:
                last_batch = batch
                if self.check_crcs and not batch.validate_crc():
                    raise errors.CorruptRecordError(
                        f"Record batch for partition {self.topic_partition} at offset "
                        f"{batch.base_offset} failed crc check"
                    )
                if batch.magic == 2:
                    self.leader_epoch = batch.leader_epoch
                    if (
                        self.isolation_level == IsolationLevel.READ_COMMITTED
                        and batch.has_producer_id()
                    ):
                        self._consume_aborted_transactions_up_to(batch.last_offset)
                        producer_id = batch.producer_id
                        if self._contains_abort_marker(batch):
                            self.aborted_producer_ids.discard(producer_id)
                        elif self._is_batch_aborted(batch):
                            self.next_fetch_offset = batch.next_offset
                            batch = records.next_batch()
                            continue
                    if batch.is_control_batch:
                        self.next_fetch_offset = batch.next_offset
                        batch = records.next_batch()
                        continue
                    batch._maybe_uncompress()
                    origins = read_batch(batch, tp.topic, tp.partition)
                    self.records_read += len(origins)  # kafka-python's fetch metrics
                    self.bytes_read += len(batch._buffer)  # per batch, not per record
                    for origin in origins:
                        self.next_fetch_offset = origin.offset + 1
                        yield origin
                else:  # message formats 0/1: kafka-python's own records
                    for record in batch:
                        yield self._legacy(tp, record)
                batch = records.next_batch()
            else:
                # As kafka-python: a v2 batch's last offset survives compaction, so the next
                # fetch starts after the batch rather than at its last remaining record.
                if last_batch and last_batch.magic == 2:
                    self.next_fetch_offset = last_batch.next_offset
                self.drain()
        except StopIteration as exc:  # as kafka-python: never let it end the generator
            raise RuntimeError("StopIteration raised unpacking messageset") from exc

    def _legacy(self, tp: Any, record: Any) -> Origin:
        if self.check_crcs and not record.validate_crc():
            raise errors.CorruptRecordError(
                f"Record for partition {self.topic_partition} at offset {record.offset} "
                "failed crc check"
            )
        self.records_read += 1
        self.bytes_read += record.size_in_bytes
        self.next_fetch_offset = record.offset + 1
        value = record.value if record.value is not None else b""
        headers = tuple(record.headers or ())
        return Origin(
            tp.topic, tp.partition, record.offset, record.timestamp, record.key, value, headers
        )
