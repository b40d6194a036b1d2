"""Reprocessing on the real engines: a processing bug, fixed by a replay, switched atomically,
resumed after a crash, rolled back exactly."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from reprocess import runs
from reprocess.generations import day_start_ms, serving
from reprocess.runs import Run
from reprocess.service import Cleanup, Context, Reprocess, Resume, Rollback
from reprocess.tally import Tally, engine_tally
from tests.reprocess.conftest import (
    DAYS,
    OUTSIDE,
    live_write,
    make_events,
    oracle,
    rolled_up,
    send,
    served,
)

ALL = [OUTSIDE, *DAYS]


def seeded(ctx: Context, per_day: int = 400) -> list[dict[str, Any]]:
    """Events of three days in Kafka and in the buggy live generation g1."""
    events = make_events(per_day, ALL, seed=5)
    send(ctx.settings, ctx.names, events)
    live_write(ctx.client, ctx.settings, ctx.names, events)
    return events


def reprocess(ctx: Context) -> Reprocess:
    return Reprocess(ctx, day_start_ms(DAYS[0]), day_start_ms(DAYS[-1]) + 1, None)


def test_replay_fixes_the_bug_and_rollback_restores_it(ctx: Context) -> None:
    events = seeded(ctx)
    expected, before = oracle(events, ALL), served(ctx.client, ctx.names, ALL)
    assert before.days != expected.days  # the bug is visible
    late = make_events(30, DAYS, seed=9)  # arrive while the replay runs (live ingestion)

    def live_ingestion(run: Run) -> None:
        if run.stats["read"] <= ctx.settings.reprocess_batch_docs:  # once, after batch one
            send(ctx.settings, ctx.names, late)
            live_write(ctx.client, ctx.settings, ctx.names, late)

    ctx.after_checkpoint = live_ingestion
    action = reprocess(ctx)
    assert [d.day for d in action.plan.days] == [d.strftime("%Y.%m.%d") for d in DAYS]
    run = action.apply()

    assert run.phase == runs.SWITCHED, run.report
    assert run.report["verify"]["ok"] and run.report["verify"]["changed_vs_old"] > 0
    after = served(ctx.client, ctx.names, ALL)
    full = oracle(events + late, ALL)
    for day in DAYS:
        key = day.strftime("%Y.%m.%d")
        assert after.days[key] == full.days[key]  # fixed, late arrivals included
    outside = OUTSIDE.strftime("%Y.%m.%d")
    assert after.days[outside] == before.days[outside] != expected.days[outside]  # untouched
    rollups = rolled_up(ctx.client, ctx.names, DAYS)  # rebuilt by the switch
    assert rollups.days == {d: after.days[d] for d in rollups.days}
    assert set(rollups.days) == {d.strftime("%Y.%m.%d") for d in DAYS}

    old_generation = generation_tally(ctx, ctx.settings.generation)  # buggy, late included
    Rollback(ctx).apply()
    assert served(ctx.client, ctx.names, ALL).days == old_generation.days
    back = rolled_up(ctx.client, ctx.names, DAYS)  # rebuilt again by the rollback
    assert back.days == {d: old_generation.days[d] for d in back.days}

    cleaned = Cleanup(ctx, run.run_id).apply()
    assert cleaned and all(f"-{run.plan.new_generation}-" in i for i in cleaned)


def generation_tally(ctx: Context, generation: str) -> Tally:
    out = Tally()
    for day in ALL:
        index = ctx.names.raw_index(generation, day)
        ctx.client.indices.refresh(index=index)
        out.merge(engine_tally(ctx.client, index, day.strftime("%Y.%m.%d")))
    return out


def test_crash_mid_replay_resumes_with_exact_counts(ctx: Context) -> None:
    events = seeded(ctx)
    calls = {"n": 0}

    def crash(run: Run) -> None:  # after the checkpoint, before the bulk: the worst moment
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed mid-replay")

    ctx.after_checkpoint = crash
    with pytest.raises(KeyboardInterrupt):
        reprocess(ctx).apply()
    crashed = runs.unfinished(ctx.client, ctx.names)
    assert crashed is not None and crashed.phase == runs.REPLAYING

    ctx.after_checkpoint = None
    run = Resume(ctx).apply()
    assert run.phase == runs.SWITCHED, run.report
    expected = oracle(events, DAYS)
    assert run.tally.days == expected.days
    distinct = sum(row[0] for merchants in expected.days.values() for row in merchants.values())
    assert run.stats["tallied"] == distinct
    assert served(ctx.client, ctx.names, DAYS).days == expected.days


def test_queries_during_the_switch_see_old_or_new_never_a_mix(ctx: Context) -> None:
    seeded(ctx, per_day=200)
    old = served(ctx.client, ctx.names, DAYS).days
    old_answer = answer(ctx)
    answers: list[Any] = []
    done = threading.Event()

    def ask() -> None:
        while not done.is_set() or len(answers) < 5:
            answers.append(answer(ctx))

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        run = reprocess(ctx).apply()
    finally:
        done.set()
        asker.join(60)
    new_answer = answer(ctx)
    assert run.phase == runs.SWITCHED and new_answer != old_answer
    assert all(a in (old_answer, new_answer) for a in answers)  # never a missing/doubled day
    assert len(answers) >= 5
    Rollback(ctx).apply()
    assert served(ctx.client, ctx.names, DAYS).days == old  # exactly the old answers


def answer(ctx: Context) -> Any:
    """One request over the whole range, as a merchant's report is: per day and merchant,
    events and the sum of amounts."""
    start, end = day_start_ms(DAYS[0]), day_start_ms(DAYS[-1]) + 86_400_000
    body = {
        "size": 0,
        "query": {"range": {"occurred_at": {"gte": start, "lt": end}}},
        "aggs": {
            "d": {
                "date_histogram": {"field": "occurred_at", "calendar_interval": "1d"},
                "aggs": {
                    "m": {
                        "terms": {"field": "merchant_id", "size": 100},
                        "aggs": {"a": {"sum": {"field": "amount_milli"}}},
                    }
                },
            }
        },
    }
    result = ctx.client.search(index=ctx.names.events_alias, body=body)
    return [
        (d["key"], [(m["key"], m["doc_count"], m["a"]["value"]) for m in d["m"]["buckets"]])
        for d in result["aggregations"]["d"]["buckets"]
    ]


def test_reindex_copies_verifies_and_switches(ctx: Context) -> None:
    seeded(ctx, per_day=150)
    before = served(ctx.client, ctx.names, DAYS)
    action = Reprocess(ctx, day_start_ms(DAYS[0]), day_start_ms(DAYS[-1]) + 1, "r2", "reindex")
    run = action.apply()
    assert run.phase == runs.SWITCHED and run.report["verify"]["changed_vs_old"] == 0
    assert served(ctx.client, ctx.names, DAYS).days == before.days
    gens = serving(ctx.client, ctx.names)
    assert all(set(gens[d.strftime("%Y.%m.%d")]) == {"r2"} for d in DAYS)
