"""`pulse dlq stats|show|redrive` on the real broker and indexer.

Letters are read without a consumer group (manual assignment, up to the end offsets captured at
the start), so a command run right after the letters were written sees every one of them and
never "empty while joining". A re-drive after a fix (raw retention raised) indexes the
dead-lettered events; re-driving twice still counts every event once.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kafka import KafkaProducer
from opensearchpy import OpenSearch

from indexer import deadletters as dl
from indexer.dlq import dlq_headers
from indexer.model import DeadLetter, Origin
from ingest.contract import to_kafka_message
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
    pulse_dlq,
)

HOUR = 3_600_000
# reason -> ages (ms before now) of the letters written with that reason
LETTERS = {
    "invalid_json": [0, 10, 20],
    "missing:event_id": [2 * HOUR, 3 * HOUR],
    "expired:occurred_at": [3 * DAY_MS],
    "too_long:merchant_id": [10 * DAY_MS],
}


def _write_letters(bootstrap: str, topic: str, now: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    n = 0
    for reason, ages in LETTERS.items():
        for age in ages:
            n += 1
            origin = Origin("events.raw", n % 3, 100 + n, now - age, None, f"bytes-{n}".encode())
            letter = DeadLetter(origin, "validate", reason, f"detail {n}")
            producer.send(topic, value=origin.value, headers=dlq_headers(letter, now - age))
    producer.flush()
    producer.close()


def test_stats_and_show_see_every_letter_at_once(settings: Settings, topics: Names) -> None:
    empty = dl.stats(settings)  # the topics exist, nothing was dead-lettered
    assert (empty.total, empty.by_reason, empty.blocked_batches) == (0, {}, [])
    now = now_ms()
    _write_letters(settings.kafka_bootstrap or "", topics.topic_dlq, now)
    started = time.monotonic()
    result = dl.stats(settings, now_ms=now)  # right away: no group to join
    assert time.monotonic() - started < 20  # well below a group join; not a speed claim
    assert result.total == 7
    assert result.by_reason == {r: len(a) for r, a in LETTERS.items()}
    assert result.by_age == {"<1h": 3, "1h-24h": 2, "1d-7d": 1, ">7d": 1}
    assert result.by_reason_age["missing:event_id"] == {"<1h": 0, "1h-24h": 2, "1d-7d": 0, ">7d": 0}
    assert (result.oldest_ms, result.newest_ms) == (now - 10 * DAY_MS, now)

    shown = dl.show(settings, "invalid_json", limit=2)
    assert [x.detail for x in shown] == ["detail 2", "detail 1"]  # the newest two, oldest first
    assert shown[0].value == b"bytes-2" and shown[0].origin == "events.raw/2@102"
    assert dl.show(settings, "nope") == []


def _events(now: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    gen = Generator(LoadSpec(merchants=8, seed=41, duplicate_rate=0.05))
    old = list(gen.stream(gen.events(150, now - 3 * DAY_MS, now - 2 * DAY_MS)))
    fresh = list(gen.stream(gen.events(100, now - HOUR, now)))
    return old, fresh


def test_redrive_after_a_fix_indexes_each_event_once(
    settings: Settings, topics: Names, os_client: OpenSearch
) -> None:
    now = now_ms()
    old, fresh = _events(now)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    for e in old + fresh:
        producer.send(topics.topic_raw, key=e["event_id"].encode(), value=to_kafka_message(e))
    producer.send(topics.topic_raw, value=b"{not json")  # stays invalid after the fix
    producer.flush()
    producer.close()
    short = settings.model_copy(update={**FAST, "raw_retention_days": 1})
    with indexer_thread(short) as ix:
        assert wait_until(lambda: ix.settled == len(old) + len(fresh) + 1, 60, 0.1)
    stats = json.loads(pulse_dlq(settings, "stats", "--json"))
    assert stats["by_reason"] == {"expired:occurred_at": len(old), "invalid_json": 1}

    fixed = settings.model_copy(update={"raw_retention_days": 30})  # the fix
    dry = pulse_dlq(fixed, "redrive", "--reason", "expired:occurred_at", "--dry-run")
    assert f"{len(old)} letters to re-send" in dry
    raw = list(dl.read_letters(settings.kafka_bootstrap or "", topics.topic_raw))
    assert len(raw) == len(old) + len(fresh) + 1  # the dry run sent nothing
    for _ in range(2):  # re-driven twice: each event still counts once
        sent = pulse_dlq(
            fixed, "redrive", "--reason", "expired:occurred_at", "--since", "1h", "--yes"
        )
        assert f"re-sent {len(old)} letters" in sent
    with indexer_thread(fixed.model_copy(update=FAST)) as ix:
        assert wait_until(lambda: ix.settled == 2 * len(old), 60, 0.1)
    assert indexed_totals(os_client, topics) == expected_totals(distinct_events(old + fresh))
