"""Prometheus metrics of one rollup scheduler, in a registry of its own. Served on
``/metrics`` when ``rollups_metrics_port`` > 0 (0: not served; tests read the registry).

- ``pulse_rollups_runs_total{outcome}``: runs by outcome (``ok``, ``skipped``, ``lease_lost``,
  ``failed``). ``skipped``: every shard is held by other replicas, or this replica's shards
  are current; ``lease_lost``: a shard was taken over mid-run (its work did not count).
- ``pulse_rollups_run_duration_seconds``: wall time of runs that did work (``ok``) or failed.
- ``pulse_rollups_watermark_timestamp_seconds``: the served watermark W (ingest time), read
  from the engine after every run by every replica, so any replica answers for the job.
- ``pulse_rollups_watermark_age_seconds``: now - W at scrape time (what the alert and the
  dashboard want; the timestamp stays for ``time() - ...`` arithmetic).
- ``pulse_rollups_holds``: event-time ranges held by a reprocess switch (rollups not served).
- ``pulse_rollups_last_run_timestamp_seconds``: when this replica last finished a run of any
  outcome (a scheduler that stopped ticking shows here).
- ``pulse_rollups_shard_owned{shard}``: 1 for each shard this replica holds, 0 for the others
  (the shard index is bounded by ``rollup_shards``); ``pulse_rollups_shards_owned``: how many.
- ``pulse_rollups_shards``: the layout's shard count; ``pulse_rollups_shards_unowned``: shards
  whose lease has run out (no live worker holds them), as read from the engine.
- ``pulse_rollups_lease_conflicts_total``: compare-and-set writes of shard documents this
  replica lost (a claim another worker won, or a lease taken over: its writes were fenced).
The watermark metrics report the served W, which is the slowest shard's.
"""

from __future__ import annotations

import time
from collections.abc import Set

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

RUN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
OUTCOMES = ("ok", "skipped", "lease_lost", "failed")


class RollupMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "pulse_rollups_"
        self.runs = Counter(p + "runs", "Rollup runs by outcome", ["outcome"], registry=r)
        for outcome in OUTCOMES:  # every series exists from the start: rate() needs a zero
            self.runs.labels(outcome)
        self.run_seconds = Histogram(
            p + "run_duration_seconds",
            "Wall time of a rollup run that did work or failed",
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.watermark = Gauge(
            p + "watermark_timestamp_seconds",
            "The committed rollup watermark W (ingest time), epoch seconds",
            registry=r,
        )
        self.watermark_age = Gauge(
            p + "watermark_age_seconds",
            "How far the rollup watermark trails the clock (absent before the first run)",
            registry=r,
        )
        self.watermark_age.set_function(self._age)
        self.holds = Gauge(
            p + "holds", "Event-time ranges whose rollups are held by a reprocess", registry=r
        )
        self.last_run = Gauge(
            p + "last_run_timestamp_seconds",
            "When this replica last finished a run (any outcome), epoch seconds",
            registry=r,
        )
        self.shard_owned = Gauge(
            p + "shard_owned", "1 for each shard this replica holds", ["shard"], registry=r
        )
        self.shards_owned = Gauge(p + "shards_owned", "Shards this replica holds", registry=r)
        self.shards = Gauge(p + "shards", "Shards of the rollup job (rollup_shards)", registry=r)
        self.shards_unowned = Gauge(
            p + "shards_unowned", "Shards no live worker holds (lease run out)", registry=r
        )
        self.lease_conflicts = Counter(
            p + "lease_conflicts",
            "Compare-and-set writes of shard documents this replica lost",
            registry=r,
        )
        self._conflicts_seen = 0
        self._watermark_s: float | None = None

    def _age(self) -> float:
        # NaN before the first watermark: an absent age must not read as "current".
        if self._watermark_s is None:
            return float("nan")
        return max(0.0, time.time() - self._watermark_s)

    def observe_run(self, outcome: str, seconds: float | None) -> None:
        self.runs.labels(outcome).inc()
        if seconds is not None:
            self.run_seconds.observe(seconds)
        self.last_run.set(time.time())

    def observe_state(self, watermark_ms: int | None, holds: int) -> None:
        if watermark_ms is not None:
            self._watermark_s = watermark_ms / 1000
            self.watermark.set(self._watermark_s)
        self.holds.set(holds)

    def observe_shards(
        self, owned: Set[int], unowned: int, shards: int, lease_conflicts: int
    ) -> None:
        """This replica's shards (one series per shard index: bounded), the unowned count,
        and the lease conflicts counted by the job since the last observation."""
        for shard in range(shards):
            self.shard_owned.labels(str(shard)).set(1 if shard in owned else 0)
        self.shards_owned.set(len(owned))
        self.shards.set(shards)
        self.shards_unowned.set(unowned)
        self.lease_conflicts.inc(max(0, lease_conflicts - self._conflicts_seen))
        self._conflicts_seen = lease_conflicts

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        if port > 0:
            start_http_server(port, addr=addr, registry=self.registry)
