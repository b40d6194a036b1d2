"""A run replayed by two worker processes, one of them killed with SIGKILL mid-replay: its
partitions are taken over once its lease expires, and the run still counts every event
exactly once and serves the oracle."""

from __future__ import annotations

import os
import signal
import threading
import time

from reprocess import runs, tallies
from reprocess.runs import RunError
from reprocess.service import Context
from reprocess.workers import slice_ids
from tests.reprocess.conftest import DAYS, oracle, reprocess, seeded, served

WORKERS = 2


def test_a_killed_worker_is_taken_over_and_counts_stay_exact(ctx: Context) -> None:
    events = seeded(ctx)
    ctx.settings = ctx.settings.model_copy(
        update={
            "reprocess_workers": WORKERS,
            "reprocess_worker_lease_s": 3.0,
            "reprocess_batch_docs": 40,
        }
    )
    killed: list[tuple[str, int]] = []
    watcher = threading.Thread(target=_kill_one_worker, args=(ctx, killed), daemon=True)
    watcher.start()
    run = reprocess(ctx).apply()
    watcher.join(5)

    assert killed, "no worker was caught mid-replay"
    assert run.stats["workers_spawned"] > WORKERS  # the dead worker was replaced
    assert run.phase == runs.SWITCHED, run.report
    pieces = [runs.load(ctx.client, ctx.names, sid) for sid in slice_ids(run, WORKERS)]
    assert {p.kind for p in pieces} == {"slice"}
    assert all(p.phase == runs.REPLAYED and not p.owner for p in pieces)
    expected = oracle(events, DAYS)
    # every event tallied once, none lost
    assert tallies.total(ctx.client, ctx.names, run).days == expected.days
    distinct = sum(row[0] for merchants in expected.days.values() for row in merchants.values())
    assert run.stats["tallied"] == distinct == _stored(ctx, run)
    assert served(ctx.client, ctx.names, DAYS).days == expected.days


def _kill_one_worker(ctx: Context, killed: list[tuple[str, int]]) -> None:
    """SIGKILL the owner of the first slice seen with a checkpointed batch not yet confirmed
    durable (at most 120 s): the taker-over must re-write it. The worker is a child of this
    test's process (the run's driver runs in it)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = runs.unfinished(ctx.client, ctx.names)
        for sid in slice_ids(run, WORKERS) if run is not None else []:
            try:
                piece = runs.load(ctx.client, ctx.names, sid)
            except RunError:
                continue  # not created yet
            unconfirmed = any(o < piece.offsets[p] for p, o in piece.pending_from.items())
            if piece.phase == runs.REPLAYING and piece.owner and unconfirmed:
                pid = int(piece.owner.rsplit(":", 1)[1])
                os.kill(pid, signal.SIGKILL)
                killed.append((sid, pid))
                return
        time.sleep(0.02)


def _stored(ctx: Context, run: runs.Run) -> int:
    index = ",".join(ctx.names.raw_index(run.plan.new_generation, day) for day in DAYS)
    ctx.client.indices.refresh(index=index)
    return int(ctx.client.count(index=index)["count"])
