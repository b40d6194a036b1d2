"""The indexer in-process against the real engines: item-level failures, poison pills, bounds,
and re-sends with another day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import KafkaProducer
from opensearchpy import OpenSearch

from ingest.contract import to_kafka_message
from pulse.engines import wait_until
from pulse.naming import Names
from pulse.settings import Settings
from storage import arrivals
from storage.templates import RAW_PROPERTIES, ensure_templates
from tests.indexer.conftest import FAST, committed, indexed_totals, indexer_thread, read_dlq

DAY_MS = 86_400_000


def _event(n: int, at_ms: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "merchant_id": "m1",
        "event_type": "payment",
        "occurred_at": at_ms,
        "amount": 10.5,
        "status": "succeeded",
        **extra,
    }


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024)
    for value in values:
        producer.send(topic, value=value, partition=0)
    producer.flush()
    producer.close()


def _noon(days_ago: int) -> int:
    today = datetime.now(tz=UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    return int((today - timedelta(days=days_ago)).timestamp() * 1000)


def _break_device_mapping(client: OpenSearch, settings: Settings, names: Names, at: int) -> None:
    """Create the day's write index with ``device`` mapped as a number, so events carrying a
    device fail mapping in the engine while the others of the same batch succeed."""
    ensure_templates(client, settings, names)
    day = datetime.fromtimestamp(at / 1000, tz=UTC).date()
    alias = names.raw_index(settings.generation, day)
    mappings = {"dynamic": "strict", "properties": {**RAW_PROPERTIES, "device": {"type": "long"}}}
    client.indices.create(
        index=names.raw_backing_index(settings.generation, day, 1),
        body={
            "mappings": mappings,
            "aliases": {alias: {"is_write_index": True}, names.events_alias: {}},
        },
    )


def test_mapping_failures_go_to_dlq_and_the_rest_lands(
    settings: Settings, topics: Names, os_client: OpenSearch
) -> None:
    s = settings.model_copy(update=FAST)
    at = _noon(1)
    _break_device_mapping(os_client, s, topics, at)
    events = [_event(n, at + n, **({"device": "ios"} if n % 5 == 0 else {})) for n in range(1, 51)]
    values = [to_kafka_message(e) for e in events]
    _produce(s.kafka_bootstrap or "", topics.topic_raw, values)

    with indexer_thread(s) as indexer:
        assert wait_until(lambda: indexer.settled >= len(values), 60)

    bad = [v for e, v in zip(events, values, strict=True) if "device" in e]
    sample = indexer.metrics.registry.get_sample_value
    assert sample("pulse_indexer_dlq_total", {"reason": "mapper_parsing_exception"}) == len(bad)
    assert sample("pulse_indexer_indexed_total") == len(values) - len(bad)
    assert sample("pulse_indexer_consumed_total") == len(values)
    totals = indexed_totals(os_client, topics)
    assert totals["count"] == len(values) - len(bad)
    assert totals["amount_milli"] == 10_500 * totals["count"]
    dlq = read_dlq(s.kafka_bootstrap or "", topics.topic_dlq, len(bad))
    assert sorted(r.value for r in dlq) == sorted(bad)  # the original bytes, unchanged
    headers = [dict(r.headers) for r in dlq]
    assert {h["pulse.reason"] for h in headers} == {b"mapper_parsing_exception"}
    assert all(b"device" in h["pulse.detail"] for h in headers)  # the engine's own message
    assert {h["pulse.stage"] for h in headers} == {b"index"}
    group = topics.group(s.indexer_group)
    done = committed(s.kafka_bootstrap or "", group, topics.topic_raw, s.raw_partitions)
    assert done == {0: len(values)}


def test_poison_pills_bounds_and_day_conflicts_never_stall(
    settings: Settings, topics: Names, os_client: OpenSearch
) -> None:
    s = settings.model_copy(update=FAST)
    # The wall clock, not today's noon: before 11:00 UTC noon is beyond the future-skew bound.
    now = int(datetime.now(tz=UTC).timestamp() * 1000)
    midnight = now - now % DAY_MS
    pills = {
        "invalid_utf8": b'{"event_id":"\xff\xfe","merchant_id":"m1"}',
        "too_large": b'{"event_id":"' + b"x" * (2 * 1024 * 1024) + b'"}',
        "invalid_json": b"[" * 100_000 + b"]" * 100_000,  # nested beyond any parser's depth
        "not_an_object": b'["event_id", "m1"]',
        "future:occurred_at": to_kafka_message(_event(900, now + 10 * DAY_MS)),
        "expired:occurred_at": to_kafka_message(_event(901, now - 400 * DAY_MS)),
        # the same event re-sent with an occurred_at on the next day: the first copy wins
        "conflict:occurred_at": to_kafka_message(_event(902, midnight + 60_000)),
    }
    first_copy = to_kafka_message(_event(902, midnight - 60_000))
    good = [to_kafka_message(_event(n, now - n * 1000)) for n in range(1, 41)]
    values = [first_copy, *good[:20], *pills.values(), *good[20:]]
    _produce(s.kafka_bootstrap or "", topics.topic_raw, values)

    with indexer_thread(s) as indexer:
        assert wait_until(lambda: indexer.settled >= len(values), 60)

    totals = indexed_totals(os_client, topics)
    assert totals["count"] == len(good) + 1
    dlq = read_dlq(s.kafka_bootstrap or "", topics.topic_dlq, len(pills))
    reasons = {dict(r.headers)["pulse.reason"].decode(): r for r in dlq}
    assert sorted(reasons) == sorted(pills)
    big = reasons["too_large"]
    assert dict(big.headers)["pulse.truncated"] == b"1"
    assert dict(big.headers)["pulse.size"] == str(len(pills["too_large"])).encode()
    assert pills["too_large"].startswith(big.value)
    assert reasons["not_an_object"].value == pills["not_an_object"]
    assert b"already indexed" in dict(reasons["conflict:occurred_at"].headers)["pulse.detail"]
    group = topics.group(s.indexer_group)
    done = committed(s.kafka_bootstrap or "", group, topics.topic_raw, s.raw_partitions)
    assert done == {0: len(values)}


def test_each_written_day_gets_an_arrivals_bound_above_its_documents(
    settings: Settings, topics: Names, os_client: OpenSearch
) -> None:
    """storage.arrivals: the bound is raised before the bulk, so it covers every ingested_at."""
    s = settings.model_copy(update=FAST)
    days = (1, 3)
    events = [_event(100 * d + n, _noon(d) + n) for d in days for n in range(1, 21)]
    values = [to_kafka_message(e) for e in events]
    _produce(s.kafka_bootstrap or "", topics.topic_raw, values)
    with indexer_thread(s) as indexer:
        assert wait_until(lambda: indexer.settled >= len(values), 60)
    os_client.indices.refresh(index=topics.events_alias)
    day_numbers = {_noon(d) // arrivals.DAY_MS for d in days}
    found = arrivals.bounds(os_client, topics, {*day_numbers, min(day_numbers) - 1})
    assert set(found) == day_numbers  # no bound for a day nothing was written to
    for day in day_numbers:
        start = day * arrivals.DAY_MS
        newest = os_client.search(
            index=topics.events_alias,
            body={
                "size": 0,
                "query": {"range": {"occurred_at": {"gte": start, "lt": start + arrivals.DAY_MS}}},
                "aggs": {"n": {"max": {"field": "ingested_at"}}},
            },
        )["aggregations"]["n"]["value"]
        assert newest is not None and found[day] >= newest


def test_a_re_send_with_another_day_in_a_later_batch_is_found_by_the_first_copy_check(
    settings: Settings, topics: Names, os_client: OpenSearch
) -> None:
    """The first copy is durable (its batch committed) before the re-send arrives, so only
    the realtime mget over the neighbouring days' indices (``BatchWriter._lookup_earlier``,
    decision 0280's per-index body) can tell: the re-send is a conflict, not a second copy."""
    s = settings.model_copy(update=FAST)
    now = int(datetime.now(tz=UTC).timestamp() * 1000)
    midnight = now - now % DAY_MS
    bootstrap = s.kafka_bootstrap or ""
    with indexer_thread(s) as indexer:
        _produce(bootstrap, topics.topic_raw, [to_kafka_message(_event(7, midnight - 60_000))])
        assert wait_until(lambda: indexer.settled >= 1, 60)
        resent = to_kafka_message(_event(7, midnight + 60_000))  # the same event, today
        _produce(bootstrap, topics.topic_raw, [resent, to_kafka_message(_event(8, now))])
        assert wait_until(lambda: indexer.settled >= 3, 60)
    assert indexed_totals(os_client, topics)["count"] == 2
    [letter] = read_dlq(bootstrap, topics.topic_dlq, 1)
    headers = dict(letter.headers)
    assert headers["pulse.reason"] == b"conflict:occurred_at"
    assert letter.value == resent
    yesterday = datetime.fromtimestamp((midnight - 60_000) / 1000, tz=UTC).date()
    assert topics.raw_index(s.generation, yesterday).encode() in headers["pulse.detail"]
