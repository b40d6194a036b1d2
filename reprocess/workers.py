"""Parallel replay: a run's partitions divided among worker processes.

The run (planning, verification, the switch) stays with the process that drives it. Its
replay phase is split into ``reprocess_workers`` *slices*: disjoint sets of partitions, each a
run state of its own in the engine (kind ``slice``: offsets, ``pending_from``, window stops,
tally sequence), checkpointed exactly like a one-process run (docs/decisions/0090). A slice
is replayed by whichever worker holds its *lease*: claimed with compare-and-set, extended by every
checkpoint, given up when the slice is done. A worker killed (even with SIGKILL) stops
extending its lease; once it has expired, another worker claims the slice and resumes it
from its ``pending_from`` — the crash-resume rule of a one-process run, per slice. A worker
that lost its lease finds out at its next checkpoint (the compare-and-set fails) and stops.

Slices are independent because every copy of an event lies in one partition (keyed by
event_id, decision 0011), so first copies are chosen within a slice. When every slice is
done, the driver merges their offsets and stops into the run and verifies as before; the
slices' tally batch documents name the run, so verification sums them with the run's own
(``reprocess.tallies``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time

from pulse.settings import Settings
from reprocess import runs
from reprocess.plan import Plan
from reprocess.runs import Run
from reprocess.service import Context, replay_phase
from storage import reprocess_index as store
from storage.reprocess_index import StaleWrite

log = logging.getLogger("pulse.reprocess.workers")
SETTINGS_ENV = "PULSE_REPROCESS_WORKER_SETTINGS"  # the driver's settings, as JSON
WAIT_S = 0.5
MAX_SPAWNS_PER_WORKER = 3


def slice_ids(run: Run, count: int) -> list[str]:
    return [f"{run.run_id}.s{i}" for i in range(count)]


def ensure_slices(ctx: Context, run: Run, count: int) -> list[str]:
    """Create the run's slices (once: a resumed driver finds them). Partitions are dealt
    round-robin; each slice starts where the run's own state says its partitions are."""
    parts = sorted(run.plan.start_offsets, key=int)
    ids = slice_ids(run, count)
    for i, sid in enumerate(ids):
        if store.read(ctx.client, ctx.names, f"run-{sid}") is not None:
            continue
        mine = parts[i::count]
        plan = Plan(
            **{
                **run.plan.__dict__,
                "start_offsets": {p: run.plan.start_offsets[p] for p in mine},
                "end_offsets": {p: run.plan.end_offsets[p] for p in mine},
            }
        )
        piece = Run(
            sid,
            plan,
            runs.REPLAYING,
            runs.now_ms(),
            offsets={p: run.offsets[p] for p in mine},
            pending_from={p: run.pending_from.get(p, run.offsets[p]) for p in mine},
            stops={p: o for p, o in run.stops.items() if p in mine},
            kind="slice",
            lease_ms=int(ctx.settings.reprocess_worker_lease_s * 1000),
        )
        with contextlib.suppress(StaleWrite):  # created by another driver: the same slice
            piece.save(ctx.client, ctx.names)
    return ids


def claim(ctx: Context, sid: str, owner: str) -> Run | None:
    """The slice, leased to ``owner``; None when it is done or another worker's lease holds."""
    piece = runs.load(ctx.client, ctx.names, sid)
    if piece.phase == runs.REPLAYED:
        return None
    if piece.owner and piece.owner != owner and piece.lease_until > runs.now_ms():
        return None
    piece.owner = owner
    try:
        piece.save(ctx.client, ctx.names)
    except StaleWrite:
        return None
    return piece


def work(ctx: Context, run_id: str, count: int) -> int:
    """A worker: replay claimable slices of the run until all are done; returns how many
    this worker finished. Waits while other workers' leases hold unfinished slices."""
    owner = f"{socket.gethostname()}:{os.getpid()}"
    run = runs.load(ctx.client, ctx.names, run_id)
    finished = 0
    while True:
        pieces = [runs.load(ctx.client, ctx.names, sid) for sid in slice_ids(run, count)]
        todo = [p for p in pieces if p.phase != runs.REPLAYED]
        if not todo:
            return finished
        piece = next((c for c in (claim(ctx, p.run_id, owner) for p in todo) if c), None)
        if piece is None:
            time.sleep(WAIT_S)
            continue
        try:
            replay_phase(ctx, piece)
        except StaleWrite:
            log.warning("lost the lease of a slice", extra={"slice": piece.run_id})
            continue
        piece.release()
        piece.save(ctx.client, ctx.names, runs.REPLAYED)
        finished += 1


def drive_workers(ctx: Context, run: Run, count: int) -> None:
    """Run ``count`` worker processes until every slice is replayed (replacing workers that
    die), then merge the slices into ``run``."""
    ids = ensure_slices(ctx, run, count)
    env = {**os.environ, SETTINGS_ENV: ctx.settings.model_dump_json()}
    command = [sys.executable, "-m", "pulsectl.cli", "reprocess", "worker", "--run", run.run_id]
    command += ["--workers", str(count)]
    procs = [subprocess.Popen(command, env=env) for _ in range(count)]
    spawns = count
    try:
        while True:
            pieces = [runs.load(ctx.client, ctx.names, sid) for sid in ids]
            if all(p.phase == runs.REPLAYED for p in pieces):
                break
            for i, proc in enumerate(procs):
                if proc.poll() is not None:
                    if spawns >= MAX_SPAWNS_PER_WORKER * count:
                        raise RuntimeError(
                            f"replay workers keep failing (last exit {proc.returncode}); "
                            "`pulse reprocess resume` continues the run"
                        )
                    log.warning("replay worker exited", extra={"code": proc.returncode})
                    procs[i] = subprocess.Popen(command, env=env)
                    spawns += 1
            time.sleep(WAIT_S)
    finally:
        for proc in procs:  # only the workers this driver started
            if proc.poll() is None:
                proc.terminate()
            proc.wait(30)
    merge(run, pieces)
    run.count(workers_spawned=spawns)


def merge(run: Run, pieces: list[Run]) -> None:
    """The slices' positions, stops and counters, into the run (their tally documents are
    already the run's: ``reprocess.tallies``)."""
    for piece in pieces:
        run.offsets.update(piece.offsets)
        run.pending_from.update(piece.pending_from)
        run.stops.update(piece.stops)
        run.count(**piece.stats)
    lates = [p.late_until for p in pieces if p.late_until]
    run.late_until = min(lates) if lates else run.late_until


def worker_settings() -> Settings | None:
    """The driver's settings when started by ``drive_workers``."""
    raw = os.environ.get(SETTINGS_ENV)
    return Settings.model_validate_json(raw) if raw else None
