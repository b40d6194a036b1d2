"""``pulse rollups``: the rollup job on an APScheduler interval, in the foreground.

APScheduler (3.x ``BackgroundScheduler``) runs ``RollupJob.run_once`` every
``settings.rollup_interval_s``, first at start-up, never two at once in this process
(``max_instances=1``, ``coalesce``: a run longer than the interval delays the next instead of
queueing several). Across replicas the shard leases decide who writes what (rollups.shards):
any number of replicas share the shards. SIGTERM/SIGINT let the current run finish, give the
shards back (so the other replicas take them over without waiting out the ttl) and return.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as EngineConnectionError
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from pulse.naming import Names
from pulse.settings import Settings
from rollups import shards, state
from rollups.job import RollupJob, RunReport
from rollups.lease import LeaseLost
from rollups.metrics import RollupMetrics

log = logging.getLogger("pulse.rollups")


class RollupScheduler:
    """One replica's scheduler: ``start()``, then ``stop()`` (or ``serve()`` until a signal)."""

    def __init__(
        self,
        job: RollupJob,
        interval_s: float,
        on_report: Callable[[RunReport], None] | None = None,
    ) -> None:
        self.job = job
        self.interval_s = interval_s
        self.on_report = on_report  # e.g. the bench, to time runs
        self.runs = 0
        self.metrics = RollupMetrics()
        self._scheduler = BackgroundScheduler(timezone=UTC)

    def tick(self) -> None:
        """One scheduled run; failures are logged and retried by the next run."""
        started = time.perf_counter()
        try:
            report = self.job.run_once()
        except LeaseLost as exc:
            log.warning("rollup run stopped: %s", exc)
            self.metrics.observe_run("lease_lost", time.perf_counter() - started)
        except Exception:
            log.exception("rollup run failed; the next run retries (watermark unchanged)")
            self.metrics.observe_run("failed", time.perf_counter() - started)
        else:
            if report.skipped is None or self.runs == 0:
                log.info("rollup run", extra={"report": report.__dict__})
            if report.lost:
                log.warning("rollup shards taken over mid-run", extra={"shards": report.lost})
                self.metrics.observe_run("lease_lost", report.seconds)
            elif report.skipped is None:
                self.metrics.observe_run("ok", report.seconds)
            else:
                self.metrics.observe_run("skipped", None)
            if self.on_report is not None:
                self.on_report(report)
        self.runs += 1
        self.observe_state()

    def observe_state(self) -> None:
        """The served watermark, the holds and the shards, for every replica's metrics (two
        mgets): what this replica holds, and what no live worker holds."""
        job = self.job
        try:
            view = state.view(job.client, job.names)
            docs = shards.read_all(job.client, job.names, job.shard_count)
        except Exception as exc:  # the engine is down: the run above already said so
            log.warning("cannot read the rollup state", extra={"error": repr(exc)})
            return
        self.metrics.observe_state(view.watermark(), len(view.holds))
        now = job.clock()
        self.metrics.observe_shards(
            owned=set(job.leases.held),
            unowned=sum(1 for d in docs.values() if d.expires_at() <= now),
            shards=job.shard_count,
            lease_conflicts=job.leases.conflicts,
        )

    def start(self) -> None:
        self._scheduler.add_job(
            self.tick,
            "interval",
            seconds=self.interval_s,
            next_run_time=datetime.now(tz=UTC),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._scheduler.start()

    def stop(self) -> None:
        """Let a running run finish, then give the lease up."""
        self._scheduler.shutdown(wait=True)
        self.job.release()

    def serve(self) -> None:
        """Run until SIGTERM or SIGINT."""
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.start()
        log.info("rollup scheduler started", extra={"owner": self.job.owner})
        stop.wait()
        self.stop()
        log.info("rollup scheduler stopped", extra={"owner": self.job.owner})


@retry(
    retry=retry_if_exception_type(EngineConnectionError),
    wait=wait_fixed(1),
    stop=stop_after_delay(60),
    reraise=True,
)
def bootstrap(job: RollupJob) -> None:
    """Templates and state index, retried while the engine is still starting."""
    job.bootstrap()


def run(client: OpenSearch, settings: Settings, names: Names) -> None:
    """The ``pulse rollups`` component: bootstrap idempotently, then schedule until a signal."""
    job = RollupJob(client, settings, names)
    bootstrap(job)
    scheduler = RollupScheduler(job, settings.rollup_interval_s)
    scheduler.metrics.serve(settings.rollups_metrics_port)
    scheduler.serve()
