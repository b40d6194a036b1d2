"""Shared pieces of the reprocess tests: a buggy "live" generation, an oracle, a context."""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from opensearchpy import OpenSearch

from ingest.contract import Event, parse_message, to_kafka_message
from ingest.loadgen import Generator, LoadSpec, invalid_message
from ingest.sinks import kafka_producer
from pulse.clock import now_ms
from pulse.naming import DAY_FORMAT, Names, day_of
from pulse.settings import Settings
from reprocess.generations import day_start_ms
from reprocess.pipeline import Processing, current_processing
from reprocess.service import Context, Reprocess
from reprocess.tally import Tally, engine_tally, row_of
from rollups.backfill import rebuild
from storage import registry
from storage import rollup_schema as rs
from storage.templates import ensure_raw_day, ensure_templates

TODAY = datetime.now(tz=UTC).date()
DAYS = [TODAY - timedelta(days=3), TODAY - timedelta(days=2)]  # the range reprocessed
OUTSIDE = TODAY - timedelta(days=4)  # a day the run must leave alone
ALL = [OUTSIDE, *DAYS]


def buggy_processing(event: Event, ingested_at_ms: int) -> dict[str, Any]:
    """The deliberate bug: amounts read in major units as if they were thousandths."""
    doc = current_processing(event, ingested_at_ms)
    if "amount_milli" in doc:
        doc["amount_milli"] = doc["amount_milli"] // 1000
    return doc


def make_events(count: int, days: Iterable[date], seed: int) -> list[dict[str, Any]]:
    gen = Generator(LoadSpec(merchants=6, seed=seed, duplicate_rate=0.05))
    out: list[dict[str, Any]] = []
    for day in days:
        start = day_start_ms(day)
        out += gen.stream(gen.events(count, start, start + 86_400_000))
    return out


Position = tuple[int, int]  # (partition, offset) of an event's message


def send(
    settings: Settings,
    names: Names,
    events: list[dict[str, Any]],
    arrived: bool = False,
    every: list[Position] | None = None,
) -> list[Position]:
    """Produce ``events`` (keyed by event_id, a few invalid messages among them) and return
    each event's position. Stamped as arriving a minute after they occurred, or now
    (``arrived``: late arrivals sent during a test). ``every`` collects the position of
    every message sent, invalid ones included."""
    assert settings.kafka_bootstrap
    producer = kafka_producer(settings.kafka_bootstrap)
    rng = random.Random(3)
    futures, invalid = [], []
    for raw in events:
        stamp = None if arrived else _occurred_ms(raw) + 60_000
        if rng.random() < 0.01:
            bad = invalid_message(rng)
            invalid.append(producer.send(names.topic_raw, value=bad, timestamp_ms=stamp))
        key = str(raw["event_id"]).encode()
        message = to_kafka_message(raw)
        futures.append(producer.send(names.topic_raw, key=key, value=message, timestamp_ms=stamp))
    producer.flush()
    producer.close()
    if every is not None:
        every += [(f.get().partition, f.get().offset) for f in futures + invalid]
    return [(f.get().partition, f.get().offset) for f in futures]


def _occurred_ms(raw: dict[str, Any]) -> int:
    event = parse_message(to_kafka_message(raw))
    assert isinstance(event, Event)
    return event.occurred_at_ms


def live_write(
    client: OpenSearch,
    settings: Settings,
    names: Names,
    events: list[dict[str, Any]],
    positions: list[Position],
    processing: Processing = buggy_processing,
    generation: str | None = None,
    arrived: bool = False,
) -> None:
    """What the live indexer (buggy by default) wrote: create-first-wins into the generation
    the registry names for each day (the hook docs/decisions/0050 asks of the indexer), or
    into ``generation`` (a bulk whose targets were resolved earlier), with each message's
    Kafka position, as ``indexer.decode`` does. ``ingested_at`` is stamped as ``send``
    stamps the messages: a minute after the event occurred (history), or now (``arrived``,
    stamped right before the bulk as the indexer does: the switch's re-search of documents
    in flight relies on it)."""
    resolver = registry.GenerationResolver(client, names, settings.generation, 0.0)
    body: list[dict[str, Any]] = []
    targets: dict[date, str] = {}
    now = now_ms()
    for raw, (partition, offset) in zip(events, positions, strict=True):
        event = parse_message(to_kafka_message(raw))
        assert isinstance(event, Event)
        day = day_of(event.occurred_at_ms)
        if day not in targets:  # the registry is read once per call and day
            chosen = generation or resolver.generation_for_day(day)
            targets[day] = ensure_raw_day(client, names, chosen, day)
        target = targets[day]
        doc = {
            **processing(event, now if arrived else event.occurred_at_ms + 60_000),
            "kafka_partition": partition,
            "kafka_offset": offset,
        }
        body += [{"create": {"_index": target, "_id": event.doc_id}}, doc]
    if body:
        client.bulk(body=body, refresh=True)


def seeded(ctx: Context, per_day: int = 400) -> list[dict[str, Any]]:
    """Events of three days in Kafka and in the buggy live generation g1."""
    events = make_events(per_day, ALL, seed=5)
    live_write(ctx.client, ctx.settings, ctx.names, events, send(ctx.settings, ctx.names, events))
    return events


def reprocess(ctx: Context) -> Reprocess:
    """A replay of DAYS into the next generation."""
    return Reprocess(ctx, day_start_ms(DAYS[0]), day_start_ms(DAYS[-1]) + 1, None)


def oracle(events: list[dict[str, Any]], days: Iterable[date]) -> Tally:
    wanted = {d.strftime(DAY_FORMAT) for d in days}
    seen: set[str] = set()
    tally = Tally({d: {} for d in wanted})
    for raw in events:
        event = parse_message(to_kafka_message(raw))
        assert isinstance(event, Event)
        day = day_of(event.occurred_at_ms).strftime(DAY_FORMAT)
        if day in wanted and event.doc_id not in seen:
            seen.add(event.doc_id)
            tally.add(day, event.merchant_id, row_of(current_processing(event, 0)))
    return tally


def served(client: OpenSearch, names: Names, days: Iterable[date]) -> Tally:
    """What the read alias answers now, per merchant and day."""
    client.indices.refresh(index=names.events_alias)
    out = Tally()
    for day in days:
        key = day.strftime(DAY_FORMAT)
        query = {
            "range": {
                "occurred_at": {"gte": day_start_ms(day), "lt": day_start_ms(day) + 86_400_000}
            }
        }
        out.merge(engine_tally(client, names.events_alias, key, query))
    return out


@pytest.fixture
def rsettings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "generation_registry_ttl_s": 0.2,
            "bulk_max_age_ms": 100,
            "reprocess_batch_docs": 400,
            "reprocess_hold_grace_s": 1.0,  # longer than any report these tests ask
        }
    )


@pytest.fixture
def ctx(rsettings: Settings, os_client: OpenSearch, topics: Names) -> Context:
    ensure_templates(os_client, rsettings, topics)
    assert rsettings.kafka_bootstrap
    return Context(
        os_client,
        rsettings,
        topics,
        rsettings.kafka_bootstrap,
        progress=False,
        rebuild_rollups=functools.partial(rebuild, os_client, rsettings, topics),
        # The tests' live indexer (``live_write``) writes before ``send`` returns to its
        # caller's next step: nothing below a head is left to wait for.
        indexer_caught_up=lambda head: None,
    )


def rolled_up(client: OpenSearch, names: Names, days: Iterable[date]) -> Tally:
    """What the hourly rollups hold, summed per merchant and day (same rows as Tally)."""
    client.indices.refresh(index=names.rollups_alias)
    out = Tally()
    for day in days:
        start = day_start_ms(day)
        body = {
            "size": 0,
            "query": {
                "bool": {
                    "filter": [
                        {"range": {rs.HOUR: {"gte": start, "lt": start + 86_400_000}}},
                        rs.TOTALS_ONLY,  # one level only: details + totals count twice
                    ]
                }
            },
            "aggs": {
                "m": {
                    "terms": {"field": rs.MERCHANT, "size": 1000},
                    "aggs": {
                        f: {"sum": {"field": f}}
                        for f in (
                            rs.EVENTS, rs.PAYMENTS_SUCCEEDED, rs.GROSS_MILLI, rs.REFUNDS_MILLI
                        )
                    },
                }
            },
        }  # fmt: skip
        res = client.search(index=names.rollups_alias, body=body)
        for bucket in res["aggregations"]["m"]["buckets"]:
            row = [
                int(bucket[f]["value"])
                for f in (rs.EVENTS, rs.PAYMENTS_SUCCEEDED, rs.GROSS_MILLI, rs.REFUNDS_MILLI)
            ]
            out.add(day.strftime(DAY_FORMAT), bucket["key"], row)
    return out
