"""Reprocessing on the real engines: a processing bug fixed by a replay while live ingestion
continues, verified, switched, rolled back exactly; and the reindex variant. (Answers as
GraphQL reports: test_graphql.py; crashes: test_crash.py.)"""

from __future__ import annotations

from reprocess import runs
from reprocess.generations import day_start_ms, serving
from reprocess.runs import Run
from reprocess.service import Cleanup, Context, Reprocess, Rollback
from reprocess.tally import Tally, engine_tally
from tests.reprocess.conftest import (
    ALL,
    DAYS,
    OUTSIDE,
    live_write,
    make_events,
    oracle,
    reprocess,
    rolled_up,
    seeded,
    send,
    served,
)


def test_replay_fixes_the_bug_and_rollback_restores_it(ctx: Context) -> None:
    events = seeded(ctx)
    expected, before = oracle(events, ALL), served(ctx.client, ctx.names, ALL)
    assert before.days != expected.days  # the bug is visible
    late = make_events(30, DAYS, seed=9)  # arrive while the replay runs (live ingestion)

    def live_ingestion(run: Run) -> None:
        if run.stats["read"] <= ctx.settings.reprocess_batch_docs:  # once, after batch one
            at = send(ctx.settings, ctx.names, late, arrived=True)
            live_write(ctx.client, ctx.settings, ctx.names, late, at, arrived=True)

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


def test_reindex_copies_verifies_and_switches(ctx: Context) -> None:
    seeded(ctx, per_day=150)
    before = served(ctx.client, ctx.names, DAYS)
    action = Reprocess(ctx, day_start_ms(DAYS[0]), day_start_ms(DAYS[-1]) + 1, "r2", "reindex")
    run = action.apply()
    assert run.phase == runs.SWITCHED and run.report["verify"]["changed_vs_old"] == 0
    assert served(ctx.client, ctx.names, DAYS).days == before.days
    gens = serving(ctx.client, ctx.names)
    assert all(set(gens[d.strftime("%Y.%m.%d")]) == {"r2"} for d in DAYS)
