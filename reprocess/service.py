"""The reprocessing workflow as curator-style actions: validate in ``__init__``, then
``dry_run()`` (what would happen) or ``apply()`` (do it). Each phase saves the run state, so
``Resume`` continues a crashed run from where it stopped.

Switch protocol (docs/decisions/0050):
1. the registry points the range's days at the new generation: the live indexer starts
   writing late events of those days there (within ``generation_registry_ttl_s``);
2. the fence: wait two registry TTLs plus a batch age, then catch up once more (replay to the
   head as it is after the wait / reindex what the old generation received since the copy),
   so every event the live indexer wrote to the old generation before it noticed is in the
   new one as well;
3. ONE ``_aliases`` update swaps the days' indices in ``events``;
4. the rollups of the range are rebuilt from the new generation.

Around steps 1 to 4 the range's rollups are held (``rollups.state.hold``, docs/decisions/0046): from
before step 1 until the rebuild is done the API answers the range from raw only, so a report
is wholly old (before the swap) or wholly new (after it), even while the rollup job runs. The
hold precedes the swap by at least ``reprocess_hold_grace_s``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date

from kafka import KafkaConsumer
from opensearchpy import OpenSearch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from pulse.naming import Names
from pulse.settings import Settings
from reprocess import generations as gens
from reprocess import late, reindex, runs, tallies
from reprocess.offsets import wait_for_commits
from reprocess.pipeline import Processing
from reprocess.plan import Plan, PlanError, build_plan
from reprocess.replay import Hook, Replayer, consumer_for, targeted_consumer
from reprocess.runs import Run, RunError
from reprocess.verify import verify
from rollups import state as rollup_state
from storage import registry
from storage import reprocess_index as store

RollupRebuild = Callable[[int, int], None]  # (start_ms, end_ms) of the days to recompute


@dataclass
class Context:
    """Everything an action needs, built once by the CLI (or a test)."""

    client: OpenSearch
    settings: Settings
    names: Names
    kafka_bootstrap: str
    console: Console = field(default_factory=lambda: Console(stderr=True))
    processing: Processing | None = None
    after_checkpoint: Hook | None = None
    rebuild_rollups: RollupRebuild | None = None
    progress: bool = True
    # Returns once the live indexer has made durable every message below the offsets
    # (default: its consumer group's commits, ``reprocess.offsets.wait_for_commits``).
    indexer_caught_up: Callable[[dict[str, int]], None] | None = None

    def consumer(self) -> KafkaConsumer:
        return consumer_for(self.kafka_bootstrap, self.settings, self.names)

    def wait_for_indexer(self, head: dict[str, int]) -> None:
        if self.indexer_caught_up is not None:
            self.indexer_caught_up(head)
        else:
            wait_for_commits(
                self.kafka_bootstrap,
                self.names.topic_raw,
                self.names.group(self.settings.indexer_group),
                head,
                self.settings.reprocess_indexer_wait_s,
            )


class Reprocess:
    """Plan a run over [start, end) (widened to UTC days); apply replays, verifies, switches."""

    def __init__(
        self,
        ctx: Context,
        start_ms: int,
        end_ms: int,
        generation: str | None,
        kind: str = "replay",
        accept_gaps: bool = False,
    ) -> None:
        self.ctx = ctx
        store.ensure_store(ctx.client, ctx.names)
        consumer = ctx.consumer() if kind == "replay" else None
        try:
            self.plan = build_plan(
                ctx.client, consumer, ctx.settings, ctx.names, start_ms, end_ms, generation, kind
            )
        finally:
            if consumer is not None:
                consumer.close()
        if self.plan.warnings and not accept_gaps:
            raise PlanError("; ".join(self.plan.warnings) + " (--accept-gaps to go on)")

    def dry_run(self) -> list[str]:
        return self.plan.describe()

    def apply(self) -> Run:
        run = runs.create(self.ctx.client, self.ctx.names, self.plan)
        self.ctx.console.print(f"run {run.run_id} started")
        return drive(self.ctx, run)


def drive(ctx: Context, run: Run) -> Run:
    """Advance ``run`` through its remaining phases (the body of apply and resume)."""
    if run.phase in (runs.PLANNED, runs.REPLAYING):
        _build(ctx, run)
    if run.phase == runs.REPLAYED:
        expected = tallies.Reader(ctx.client, ctx.names, run.run_id)
        report = verify(ctx.client, ctx.names, run.plan, expected)
        run.report["verify"] = report
        run.save(ctx.client, ctx.names, runs.VERIFIED if report["ok"] else runs.FAILED)
    if run.phase in (runs.VERIFIED, runs.SWITCHING):
        _switch(ctx, run)
    if run.phase == runs.ROLLING_BACK:
        _rollback(ctx, run)
    return run


def _build(ctx: Context, run: Run) -> None:
    run.save(ctx.client, ctx.names, runs.REPLAYING)
    if run.plan.kind == "reindex":
        reindex.copy_days(ctx.client, ctx.names, run, ctx.settings.reprocess_batch_docs)
    elif ctx.settings.reprocess_workers > 1:
        from reprocess import workers  # the workers import this module

        with _replayer(ctx, run) as replayer:
            replayer.prepare()
        workers.drive_workers(ctx, run, ctx.settings.reprocess_workers)
    else:
        with _progress(ctx) as progress:
            replay_phase(ctx, run, progress, prepare=True)
    run.save(ctx.client, ctx.names, runs.REPLAYED)


def replay_phase(
    ctx: Context, run: Run, progress: Progress | None = None, prepare: bool = False
) -> None:
    """The replay of ``run``'s partitions (a whole run, or a slice of one): the arrival
    window sequentially, then the later arrivals by position (docs/decisions/0131)."""
    with _replayer(ctx, run) as replayer:
        if prepare:
            replayer.prepare()
        window_end = run.plan.window_end_ms
        replayer.catch_up(run.plan.end_offsets, progress, window_end)  # head when planned
        if window_end:
            _fetch_late(ctx, run, replayer, pre_verify=True)


def _switch(ctx: Context, run: Run) -> None:
    plan = run.plan
    run.save(ctx.client, ctx.names, runs.SWITCHING)
    held_at = _hold(ctx, run, "switch")
    days = plan.day_dates()
    registry.assign(
        ctx.client, ctx.names, ctx.settings.generation, dict.fromkeys(days, plan.new_generation)
    )
    _fence_wait(ctx)
    if plan.kind == "reindex":
        run.count(fence=reindex.copy_since(ctx.client, ctx.names, plan, run.stats["t0"]))
    else:
        with _replayer(ctx, run) as replayer:
            # The head after the fence: from here on the live indexer writes the range's
            # days to the new generation itself, so nothing later needs the replay.
            head = replayer.head()
            if run.plan.window_end_ms:
                # Everything below the head is durable in some generation once the live
                # indexer has committed past it; then the serving generation is searched.
                ctx.wait_for_indexer(head)
                _fetch_late(ctx, run, replayer, pre_verify=False)
            else:
                replayer.catch_up(head)
    _hold_grace(ctx, held_at)
    actions = gens.switch_days(ctx.client, ctx.names, dict.fromkeys(days, plan.new_generation))
    run.report["switch_actions"] = len(actions)
    run.save(ctx.client, ctx.names)
    # SWITCHED only once the rollups are rebuilt and released: a crash before that resumes
    # the (idempotent) switch instead of leaving stale rollups held forever.
    _rebuild_rollups(ctx, run, runs.SWITCHED)


def _fetch_late(ctx: Context, run: Run, replayer: Replayer, pre_verify: bool) -> None:
    """The range's arrivals past the sequential read, by position (docs/decisions/0131).

    Before verification: those ingested before ``run.late_until`` (fixed once, so a resumed
    run asks the same search). At the switch: those not fetched then — past the last
    position fetched in their partition, or ingested since ``late_until`` minus the lateness
    margin (documents in flight at the first search)."""
    floors = replayer.sequential_bound(run.plan.end_offsets)
    if pre_verify:
        if not run.late_until:
            run.late_until = runs.now_ms()
            run.save(ctx.client, ctx.names)
        window = late.Window(floors, until_ms=run.late_until)
    else:
        margin = ctx.settings.reprocess_lateness_s * 1000
        after = {p: min(o, run.pending_from.get(p, o)) for p, o in run.offsets.items()}
        window = late.Window(floors, after=after, since_ms=run.late_until - margin)
    consumer = targeted_consumer(ctx.kafka_bootstrap, ctx.names)
    try:
        replayer.fetch_late(consumer, window)
    finally:
        consumer.close()


class Rollback:
    """Serve the range from the old generation again (the newest switched run by default)."""

    def __init__(self, ctx: Context, run_id: str | None = None) -> None:
        self.ctx = ctx
        found = (
            runs.load(ctx.client, ctx.names, run_id)
            if run_id
            else runs.latest(ctx.client, ctx.names, runs.SWITCHED, runs.ROLLING_BACK)
        )
        if found is None or found.phase not in (runs.SWITCHED, runs.ROLLING_BACK):
            raise RunError("no switched run to roll back")
        self.run = found

    def dry_run(self) -> list[str]:
        return [
            f"rollback run {self.run.run_id}: "
            + ", ".join(f"{d.day} -> {d.old_generation}" for d in self.run.plan.days)
        ]

    def apply(self) -> Run:
        self.run.save(self.ctx.client, self.ctx.names, runs.ROLLING_BACK)
        return drive(self.ctx, self.run)


def _rollback(ctx: Context, run: Run) -> None:
    """Registry back, fence, copy what arrived since the switch, swap back, rebuild rollups."""
    plan, client, names = run.plan, ctx.client, ctx.names
    old = {gens.parse_day(d.day): d.old_generation for d in plan.days}
    held_at = _hold(ctx, run, "rollback")
    registry.assign(client, names, ctx.settings.generation, old)
    _fence_wait(ctx)
    switched_at = run.times.get(runs.SWITCHING, run.created_at)
    for day, generation in old.items():
        gens.ensure_unaliased_day(client, names, generation, day)
        _copy_back(ctx, plan, day, generation, switched_at)
    _hold_grace(ctx, held_at)
    gens.switch_days(client, names, old)
    _rebuild_rollups(ctx, run, runs.ROLLED_BACK)


def _copy_back(ctx: Context, plan: Plan, day: date, generation: str, since_ms: int) -> None:
    """Events the live indexer wrote only to the new generation after the switch began."""
    source = ctx.names.raw_index(plan.new_generation, day)
    dest = gens.generation_indices(ctx.client, ctx.names, generation, day)[-1]
    ctx.client.indices.refresh(index=source, ignore_unavailable=True)
    body = {
        "source": {"index": source, "query": reindex.since(since_ms)},
        "dest": {"index": dest, "op_type": "create"},
        "conflicts": "proceed",
    }
    ctx.client.reindex(body=body, refresh=True, wait_for_completion=True)


class Resume:
    """Continue the unfinished run (there is at most one)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        found = runs.unfinished(ctx.client, ctx.names)
        if found is None:
            raise RunError("no unfinished run")
        self.run = found

    def dry_run(self) -> list[str]:
        return [f"run {self.run.run_id} is {self.run.phase}; resume continues from there"]

    def apply(self) -> Run:
        return drive(self.ctx, self.run)


class Cleanup:
    """Delete the generation a finished run no longer serves (old after a switch, new after a
    rollback). With no run id: every finished run past ``reprocess_keep_days``."""

    def __init__(self, ctx: Context, run_id: str | None = None) -> None:
        self.ctx = ctx
        done = (runs.SWITCHED, runs.ROLLED_BACK, runs.FAILED)
        if run_id:
            chosen = [runs.load(ctx.client, ctx.names, run_id)]
            if chosen[0].phase not in done:
                raise RunError(f"run {run_id} is {chosen[0].phase}; only finished runs clean up")
        else:
            cutoff = runs.now_ms() - ctx.settings.reprocess_keep_days * gens.DAY_MS
            chosen = [
                r
                for r in runs.all_runs(ctx.client, ctx.names)
                if r.phase in done and max(r.times.values()) < cutoff
            ]
        self.targets = {r.run_id: (r, self._unserved(r)) for r in chosen}

    def _unserved(self, run: Run) -> list[str]:
        serving = gens.serving(self.ctx.client, self.ctx.names)
        live = {i for gens_ in serving.values() for idx in gens_.values() for i in idx}
        if run.phase == runs.SWITCHED:
            found = [i for d in run.plan.days for i in d.old_indices]
        else:
            found = [
                i
                for day in run.plan.day_dates()
                for i in gens.generation_indices(
                    self.ctx.client, self.ctx.names, run.plan.new_generation, day
                )
            ]
        return sorted(i for i in found if i not in live)  # never delete what serves reads

    def dry_run(self) -> list[str]:
        return [
            f"run {rid}: delete {', '.join(idx) or '(nothing)'}"
            for rid, (_, idx) in self.targets.items()
        ] or ["nothing to clean up"]

    def apply(self) -> list[str]:
        deleted = []
        for run, indices in self.targets.values():
            if indices:
                self.ctx.client.indices.delete(index=",".join(indices), ignore_unavailable=True)
                deleted += indices
            tallies.delete(self.ctx.client, self.ctx.names, run.run_id)  # verified long ago
            run.save(self.ctx.client, self.ctx.names, runs.CLEANED)
        return deleted


def _fence_wait(ctx: Context) -> None:
    """Long enough for every live indexer to re-read the registry and flush its open batch."""
    time.sleep(2 * ctx.settings.generation_registry_ttl_s + ctx.settings.bulk_max_age_ms / 1000)


def _hold(ctx: Context, run: Run, why: str) -> float:
    """Stop serving the range's rollups (until ``_rebuild_rollups``); returns when (monotonic).
    A resumed run holds again and waits the whole grace again."""
    reason = f"reprocess {why} {run.run_id}"
    plan = run.plan
    rollup_state.hold(ctx.client, ctx.names, _hold_key(run), plan.start_ms, plan.end_ms, reason)
    return time.monotonic()


def _hold_grace(ctx: Context, held_at: float) -> None:
    """Reports that planned before the hold (and may read rollups) finish before the swap."""
    left = held_at + ctx.settings.reprocess_hold_grace_s - time.monotonic()
    if left > 0:
        time.sleep(left)


def _hold_key(run: Run) -> str:
    return f"reprocess.{run.run_id}"


def _rebuild_rollups(ctx: Context, run: Run, phase: str) -> None:
    """Rebuild the range's rollups from the raw now served, release the hold, enter
    ``phase``."""
    if ctx.rebuild_rollups is None:
        # Without the rollup rebuild there is no rollup job either: nothing stale is served.
        run.report["rollups"] = "not rebuilt: no rollup rebuild available"
    else:
        ctx.rebuild_rollups(run.plan.start_ms, run.plan.end_ms)
        run.report["rollups"] = "rebuilt"
    rollup_state.release(ctx.client, ctx.names, _hold_key(run))
    run.save(ctx.client, ctx.names, phase)


@contextlib.contextmanager
def _replayer(ctx: Context, run: Run) -> Iterator[Replayer]:
    consumer = ctx.consumer()
    try:
        yield Replayer(
            ctx.client, consumer, ctx.settings, ctx.names, run, ctx.processing, ctx.after_checkpoint
        )
    finally:
        consumer.close()


class RateColumn(ProgressColumn):
    """Messages per second (rich's speed column formats bytes)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} msg/s")


@contextlib.contextmanager
def _progress(ctx: Context) -> Iterator[Progress | None]:
    if not ctx.progress:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=ctx.console) as progress:
        yield progress
