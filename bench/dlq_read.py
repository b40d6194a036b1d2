"""How long `pulse dlq stats` takes to a complete answer, next to a consumer-group read.

Usage: ``python -m bench.dlq_read [--letters N] [--runs R]`` on a fresh embedded broker. Writes
N dead letters, then per run: (a) ``indexer.deadletters.read_letters`` (manual assignment, end
offsets captured at the start) and (b) a new consumer group subscribed to the topic, read until
it has seen N letters. Prints one JSON object: seconds per run and the medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import orjson
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from indexer.deadletters import read_letters
from pulse.engines import start_kafka


def _group_read(bootstrap: str, topic: str, expect: int) -> float:
    started = time.monotonic()
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )  # fmt: skip
    seen = 0
    try:
        while seen < expect and time.monotonic() - started < 120:
            seen += sum(len(r) for r in consumer.poll(timeout_ms=200).values())
    finally:
        consumer.close()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    kafka = start_kafka()
    try:
        topic = "events.dlq"
        KafkaAdminClient(bootstrap_servers=kafka.address).create_topics([NewTopic(topic, 2, 1)])
        producer = KafkaProducer(bootstrap_servers=kafka.address, acks="all")
        for i in range(args.letters):
            producer.send(topic, value=b'{"letter": %d}' % i, headers=[("pulse.reason", b"x")])
        producer.flush()
        producer.close()
        manual, group = [], []
        for _ in range(args.runs):
            started = time.monotonic()
            count = sum(1 for _ in read_letters(kafka.address, topic))
            manual.append(time.monotonic() - started)
            assert count == args.letters, count
            group.append(_group_read(kafka.address, topic, args.letters))
    finally:
        kafka.stop()
    print(orjson.dumps({
        "letters": args.letters, "manual_s": [round(x, 2) for x in manual],
        "group_s": [round(x, 2) for x in group],
        "manual_median_s": round(statistics.median(manual), 2),
        "group_median_s": round(statistics.median(group), 2),
    }).decode())  # fmt: skip


if __name__ == "__main__":
    main()
