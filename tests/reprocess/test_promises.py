"""Promises of the reprocess protocol (docs/decisions/0050, docs/reprocessing.md) that only a
broken variant shows: a failed verification blocks the switch; a rollback copies the events
the live indexer wrote to the new generation after the switch back into the old one; a plan
over Kafka history that retention cut is refused unless the operator accepts the gap.
Driven through the service functions the CLI calls (reprocess.service)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from opensearchpy import OpenSearch

from ingest.contract import Event, parse_message, to_kafka_message
from pulse.clock import now_ms
from pulse.naming import Names, day_of
from reprocess import runs
from reprocess.generations import day_start_ms, ensure_unaliased_day, serving
from reprocess.plan import PlanError
from reprocess.runs import Run
from reprocess.service import Context, Reprocess, Rollback
from storage import registry
from storage.templates import ensure_raw_day
from tests.reprocess.conftest import (
    ALL,
    DAYS,
    buggy_processing,
    make_events,
    reprocess,
    seeded,
    send,
    served,
)


def _event(raw: dict[str, Any]) -> Event:
    event = parse_message(to_kafka_message(raw))
    assert isinstance(event, Event)
    return event


def test_a_failed_verification_blocks_the_switch(ctx: Context) -> None:
    seeded(ctx)
    before, serving_before = served(ctx.client, ctx.names, ALL), serving(ctx.client, ctx.names)
    stray = _event({**make_events(1, DAYS[:1], seed=77)[0], "event_id": "stray-1"})
    written: list[str] = []

    def write_a_document_the_replay_never_read(run: Run) -> None:
        if not written:  # the new generation now holds one more event than the replay tallied
            new = run.plan.new_generation
            index = ensure_unaliased_day(ctx.client, ctx.names, new, DAYS[0])
            doc = buggy_processing(stray, 0)
            ctx.client.index(index=index, id=stray.doc_id, body=doc, params={"refresh": "true"})
            written.append(index)

    ctx.after_checkpoint = write_a_document_the_replay_never_read
    run = reprocess(ctx).apply()

    assert written
    assert run.phase == runs.FAILED, run.phase
    assert not run.report["verify"]["ok"] and run.report["verify"]["mismatches"] == 1
    assert serving(ctx.client, ctx.names) == serving_before  # the read alias never moved
    assert served(ctx.client, ctx.names, ALL).days == before.days
    resolver = registry.GenerationResolver(ctx.client, ctx.names, ctx.settings.generation, 0.0)
    assert all(resolver.generation_for_day(d) == ctx.settings.generation for d in DAYS)


def _write_as_the_live_indexer(ctx: Context, raws: list[dict[str, Any]]) -> list[str]:
    """Create-first-wins into the generation the registry names, stamped now (as live)."""
    resolver = registry.GenerationResolver(ctx.client, ctx.names, ctx.settings.generation, 0.0)
    body: list[dict[str, Any]] = []
    ids = []
    for raw in raws:
        event = _event(raw)
        day = day_of(event.occurred_at_ms)
        target = ensure_raw_day(ctx.client, ctx.names, resolver.generation_for_day(day), day)
        body += [
            {"create": {"_index": target, "_id": event.doc_id}},
            buggy_processing(event, now_ms()),
        ]
        ids.append(event.doc_id)
    ctx.client.bulk(body=body, refresh=True)
    return ids


def _present(client: OpenSearch, names: Names, ids: list[str]) -> int:
    client.indices.refresh(index=names.events_alias)
    query = {"query": {"ids": {"values": ids}}}
    return int(client.count(index=names.events_alias, body=query)["count"])


def test_a_rollback_copies_events_written_after_the_switch_back(ctx: Context) -> None:
    seeded(ctx, per_day=150)
    run = reprocess(ctx).apply()
    assert run.phase == runs.SWITCHED, run.report
    after_switch = make_events(15, DAYS, seed=21)  # live ingestion goes on after the switch
    send(ctx.settings, ctx.names, after_switch)
    ids = sorted(set(_write_as_the_live_indexer(ctx, after_switch)))
    new_days = [ctx.names.raw_index(run.plan.new_generation, d) for d in DAYS]
    ctx.client.indices.refresh(index=",".join(new_days))
    in_new = ctx.client.count(index=",".join(new_days), body={"query": {"ids": {"values": ids}}})
    assert in_new["count"] == len(ids)  # the registry sent them to the new generation only
    assert _present(ctx.client, ctx.names, ids) == len(ids)

    rolled = Rollback(ctx).apply()

    assert rolled.phase == runs.ROLLED_BACK
    gens = serving(ctx.client, ctx.names)
    assert all(set(gens[d.strftime("%Y.%m.%d")]) == {ctx.settings.generation} for d in DAYS)
    assert _present(ctx.client, ctx.names, ids) == len(ids)  # copied back, none lost


class _RetentionCut:
    """The real consumer, answering as a broker whose retention deleted each partition's first
    record: the log starts at offset 1, and a time lookup lands there at the earliest. (Tansu,
    the embedded broker, implements neither DeleteRecords nor retention.)"""

    def __init__(self, real: KafkaConsumer) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: max(1, offset) for tp, offset in self._real.beginning_offsets(tps).items()}

    def offsets_for_times(self, query: dict[TopicPartition, int]) -> dict[TopicPartition, Any]:
        found = self._real.offsets_for_times(query)
        return {tp: h and h._replace(offset=max(1, h.offset)) for tp, h in found.items()}


@dataclasses.dataclass
class _CutContext(Context):
    def consumer(self) -> Any:
        return _RetentionCut(super().consumer())


def test_a_plan_over_history_retention_cut_is_refused_without_accept_gaps(ctx: Context) -> None:
    seeded(ctx, per_day=50)
    ctx = _CutContext(**{f.name: getattr(ctx, f.name) for f in dataclasses.fields(ctx)})
    start, end = day_start_ms(DAYS[0]), day_start_ms(DAYS[-1]) + 1

    with pytest.raises(PlanError, match="--accept-gaps"):
        Reprocess(ctx, start, end, None)
    assert runs.all_runs(ctx.client, ctx.names) == []  # nothing started

    accepted = Reprocess(ctx, start, end, None, accept_gaps=True)
    assert accepted.plan.warnings and "retention" in accepted.plan.warnings[0]
    assert any("warning" in line for line in accepted.dry_run())
