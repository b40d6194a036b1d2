"""The head of each partition, as a bound a replay can read up to.

``end_offsets`` is the high watermark on Apache Kafka, but some brokers answer with the last
record batch's base offset + 1 (Tansu, the embedded test broker, does), which hides the rest
of that batch. So the reported end is checked by reading from ``end - 1``: a fetch returns
the whole batch starting there, and the highest offset seen + 1 is the head (possibly a bit
later than the call, which is harmless: any bound at or after the moment it is taken works,
docs/decisions/0130).
"""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

PROBE_S = 2.0
PROBE_POLL_MS = 200
PROBE_RECORDS = 100_000  # more than one record batch holds


def heads(consumer: KafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Per partition, an offset such that every record appended before the call lies below
    it. Leaves ``consumer`` unassigned."""
    reported = consumer.end_offsets(tps)
    out = {tp: int(reported[tp]) for tp in tps}
    probe = [tp for tp in tps if out[tp] > 0]
    if not probe:
        return out
    consumer.assign(probe)
    for tp in probe:
        consumer.seek(tp, out[tp] - 1)
    waiting = set(probe)
    deadline = time.monotonic() + PROBE_S
    while waiting and time.monotonic() < deadline:
        polled = consumer.poll(timeout_ms=PROBE_POLL_MS, max_records=PROBE_RECORDS)
        for tp, records in polled.items():
            if records:
                out[tp] = max(out[tp], max(r.offset for r in records) + 1)
                waiting.discard(tp)
    # A partition still waiting ends on a control record (transactions): the reported end
    # is exact there.
    consumer.unsubscribe()
    return out


class IndexerBehind(RuntimeError):
    """The live indexer did not commit past the head in time (is it running?)."""


def wait_for_commits(
    bootstrap: str, topic: str, group: str, head: dict[str, int], timeout_s: float
) -> None:
    """Return once ``group`` has committed at least ``head`` on every partition. The live
    indexer commits an offset only when everything below it is durable (decision 0010). A
    group that has committed nothing on the topic has no live indexer behind it: nothing to
    wait for."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            committed = {p: consumer.committed(TopicPartition(topic, int(p))) for p in head}
            if all(c is None for c in committed.values()):
                return
            behind = {p: o for p, o in head.items() if (committed[p] or 0) < o}
            if not behind:
                return
            if time.monotonic() > deadline:
                raise IndexerBehind(
                    f"live indexer group {group} has not committed up to {behind} after "
                    f"{timeout_s:.0f} s; `pulse reprocess resume` once it has caught up"
                )
            time.sleep(0.5)
    finally:
        consumer.close()
