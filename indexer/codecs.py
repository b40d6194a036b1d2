"""Which Kafka compression codecs this process can decode.

Producers choose the codec of a record batch (Fluent Bit's ``out_kafka`` is configured with
lz4; librdkafka and kafka-python producers may use gzip, snappy, lz4 or zstd), and the broker
hands the batch to consumers as written. kafka-python decodes gzip itself and the others only
through optional libraries (lz4, python-snappy, zstandard: pinned dependencies of Pulse). A
consumer without one of them cannot read that batch at all (docs/decisions/0110).
"""

from __future__ import annotations

from kafka import codec

CHECKS = {
    "gzip": codec.has_gzip,
    "snappy": codec.has_snappy,
    "lz4": codec.has_lz4,
    "zstd": codec.has_zstd,
}


def missing_codecs() -> list[str]:
    """The codecs kafka-python cannot decode in this process (empty when all are present)."""
    return [name for name, available in CHECKS.items() if not available()]
