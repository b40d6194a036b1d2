"""A run killed mid-replay resumes and finishes with exact counts: once with writes lost
between checkpoint and bulk (in-process, deterministic), once as `pulse reprocess` killed
with SIGKILL and continued by `pulse reprocess resume` (both real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from indexer.model import Batch, Outcome
from indexer.writer import BatchWriter
from pulse.settings import Settings
from reprocess import runs, tallies
from reprocess.generations import day_start_ms
from reprocess.runs import Run
from reprocess.service import Context, Resume
from reprocess.tally import Tally
from tests.reprocess.conftest import DAYS, oracle, reprocess, seeded, served

# Settings the subprocesses need to find the test's engines and namespace, and to behave
# like the in-process runs (fast fence, small batches).
ENV_FIELDS = (
    "opensearch_url", "kafka_bootstrap", "namespace", "state_dir", "raw_partitions",
    "generation", "generation_registry_ttl_s", "bulk_max_age_ms", "reprocess_batch_docs",
    "log_json", "reprocess_hold_grace_s",
)  # fmt: skip


def test_writes_lost_after_checkpoints_are_rewritten_on_resume(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer stalls after its first batch; the process dies at the next checkpoint, so
    at least two checkpointed batches were never written."""
    events = seeded(ctx)
    ctx.settings = ctx.settings.model_copy(update={"reprocess_batch_docs": 100})
    stalled, release = threading.Event(), threading.Event()
    real_write = BatchWriter.write

    def stalling_write(self: BatchWriter, batch: Batch) -> Outcome:
        if batch.seq > 1:
            stalled.set()
            release.wait(30)
            if self.cancelled(batch):
                return Outcome(batch, done=False)  # the process is gone: never written
        return real_write(self, batch)

    def crash(run: Run) -> None:
        if stalled.is_set():
            raise KeyboardInterrupt("killed mid-replay")

    monkeypatch.setattr(BatchWriter, "write", stalling_write)
    ctx.after_checkpoint = crash
    try:
        with pytest.raises(KeyboardInterrupt):
            reprocess(ctx).apply()
    finally:
        release.set()
    crashed = runs.unfinished(ctx.client, ctx.names)
    assert crashed is not None and crashed.phase == runs.REPLAYING
    assert _stored(ctx, crashed) < crashed.stats["tallied"]  # checkpointed, not written
    assert any(crashed.pending_from[p] < o for p, o in crashed.offsets.items())

    monkeypatch.undo()
    ctx.after_checkpoint = None
    _assert_exact(ctx, Resume(ctx).apply(), oracle(events, DAYS))


def test_sigkilled_reprocess_resumes_with_exact_counts(ctx: Context, tmp_path: Path) -> None:
    events = seeded(ctx)
    env = _env(ctx.settings.model_copy(update={"reprocess_batch_docs": 50}))
    start, end = day_start_ms(DAYS[0]), day_start_ms(DAYS[-1]) + 1
    cli = [sys.executable, "-m", "pulsectl.cli", "reprocess"]
    with (tmp_path / "reprocess.log").open("wb") as log:
        proc = subprocess.Popen(
            [*cli, "--from", str(start), "--to", str(end), "--yes"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait_for_replay_progress(ctx, proc, tmp_path / "reprocess.log")
            os.kill(proc.pid, signal.SIGKILL)  # only the process this test started
            assert proc.wait(10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    crashed = runs.unfinished(ctx.client, ctx.names)
    assert crashed is not None and crashed.phase == runs.REPLAYING
    assert 0 < crashed.stats["read"] < len(events)  # killed mid-replay (it reads them all)

    resumed = subprocess.run(
        [*cli, "resume"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    run = runs.load(ctx.client, ctx.names, crashed.run_id)
    assert run.report["verify"]["ok"], run.report["verify"]
    _assert_exact(ctx, run, oracle(events, DAYS))


def _env(settings: Settings) -> dict[str, str]:
    """The environment of a `pulse` subprocess: no PULSE_* of our own shell, the test's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env.update({f"PULSE_{f.upper()}": str(getattr(settings, f)) for f in ENV_FIELDS})
    return env


def _wait_for_replay_progress(ctx: Context, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the run state in the engine shows a replay checkpoint (at most 60 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"reprocess ended before the kill:\n{log.read_text()}"
        run = runs.unfinished(ctx.client, ctx.names)
        if run is not None and run.phase == runs.REPLAYING and run.stats.get("read", 0) > 0:
            return
        time.sleep(0.01)
    pytest.fail(f"no replay progress within 60 s:\n{log.read_text()}")


def _stored(ctx: Context, run: Run) -> int:
    index = ",".join(ctx.names.raw_index(run.plan.new_generation, day) for day in DAYS)
    ctx.client.indices.refresh(index=index)
    return int(ctx.client.count(index=index)["count"])


def _assert_exact(ctx: Context, run: Run, expected: Tally) -> None:
    """Switched, tallied exactly once per distinct event, and serving the oracle's figures."""
    assert run.phase == runs.SWITCHED, run.report
    assert tallies.total(ctx.client, ctx.names, run).days == expected.days
    distinct = sum(row[0] for merchants in expected.days.values() for row in merchants.values())
    assert run.stats["tallied"] == distinct == _stored(ctx, run)
    assert served(ctx.client, ctx.names, DAYS).days == expected.days
