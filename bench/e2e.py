"""`pulse bench e2e`: freshness, consumer lag and CPU per component on the embedded stack.

The run: start `pulse up` (bench/stackrun.py), create an admin key, then for each path
(collector, straight to Kafka) and each rate, run the load sender (its own process) for one
step while probe events travel the same path (bench/probes.py) and samplers record CPU per
component, consumer lag and the freshness watermarks every second. After the last step it
waits, bounded, for the outstanding probes, measures storage (average raw document size, the
rollup reduction factor), checks the broker's end offsets against what was produced, and
stops the stack. Everything is bounded in time and count, and stops by itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch
from rich.console import Console

from bench import machine
from bench.monitor import CpuSampler, LagSampler
from bench.probes import (
    HOUR_MS,
    MINUTE_MS,
    RAW_MERCHANT,
    ROLLUP_MERCHANT,
    GraphQL,
    ProbeLane,
    Transport,
    complete_hour_count,
    freshness,
    pinned_ids,
    raw_count,
    rollup_events,
)
from bench.report import step_figures, targets
from bench.stackrun import RunningStack, pulse_up
from ingest.sinks import kafka_producer
from pulse.clients import opensearch_client
from pulse.keystore import create_key
from pulse.naming import Names
from pulse.settings import Settings

console = Console(stderr=True)
SCHEMA = "pulse.bench.e2e/1"
QUICK_RATES = (500.0, 2000.0)
FULL_RATES = (500.0, 1000.0, 2000.0)
QUICK_ROLLUP_INTERVAL_S = 10


@dataclass(frozen=True)
class E2EConfig:
    """What one run does; the defaults are the documented ones (docs/benchmarks.md, E2E)."""

    rates: tuple[float, ...] = FULL_RATES
    step_seconds: float = 60.0
    paths: tuple[str, ...] = ("collector", "kafka")
    rollup_interval_s: int = 60
    quick: bool = False
    raw_probe_every_s: float = 0.25
    rollup_probe_every_s: float = 2.0
    raw_poll_s: float = 0.2
    rollup_poll_s: float = 0.5
    sample_s: float = 1.0
    raw_drain_s: float = 20.0
    settle_s: float = 90.0  # bounded wait between steps for the backlog to drain
    env: dict[str, str] = field(default_factory=dict)  # extra PULSE_* for `pulse up`

    @classmethod
    def from_options(
        cls, quick: bool, rates: str, step_seconds: float, paths: str, rollup_interval_s: int
    ) -> E2EConfig:
        """Options as given on the command line; empty/zero means the mode's default."""
        parsed_rates = tuple(float(r) for r in rates.split(",") if r.strip())
        parsed_paths = tuple(p.strip() for p in paths.split(",") if p.strip())
        unknown = set(parsed_paths) - {"collector", "kafka"}
        if unknown or any(r <= 0 for r in parsed_rates):
            raise ValueError(f"bad --paths {sorted(unknown)} or a rate <= 0")
        return cls(
            rates=parsed_rates or (QUICK_RATES if quick else FULL_RATES),
            step_seconds=step_seconds or (25.0 if quick else 60.0),
            paths=parsed_paths or (("collector",) if quick else ("collector", "kafka")),
            rollup_interval_s=rollup_interval_s
            or (QUICK_ROLLUP_INTERVAL_S if quick else Settings().rollup_interval_s),
            quick=quick,
            settle_s=8.0 if quick else 90.0,
        )

    @property
    def rollup_drain_s(self) -> float:
        """Two job intervals and a margin: a late event is reflected within two intervals."""
        return 2.0 * self.rollup_interval_s + 15.0

    def stack_env(self) -> dict[str, str]:
        env = {
            "PULSE_ROLLUP_INTERVAL_S": str(self.rollup_interval_s),
            # The probes poll several times a second with one key; the bench must not be
            # throttled by the per-key limit that protects production.
            "PULSE_RATE_LIMIT_PER_MINUTE": "1000000",
        }
        env.update(self.env)
        return env


@dataclass
class Step:
    path: str
    target_rate: float
    started: float
    ended: float = 0.0
    sender: dict[str, Any] = field(default_factory=dict)
    settle_s: float | None = None


@dataclass
class Run:
    """The mutable state of one run, shared by the step loop and the background threads."""

    config: E2EConfig
    stack: RunningStack
    gql: GraphQL
    transport: Transport
    cpu: CpuSampler
    lag: LagSampler
    engine: OpenSearch
    names: Names
    t0: float = field(default_factory=time.time)
    steps: list[Step] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    sending: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    raw: ProbeLane = field(init=False)
    rollup: ProbeLane = field(init=False)
    closed_hour_ms: int = field(init=False)

    def __post_init__(self) -> None:
        partitions = max(1, len(self.lag.partitions))
        now_ms = int(self.t0 * 1000)
        # Late probes land in the previous, already closed hour: their bucket is complete
        # again only once the rollup job has recomputed it.
        self.closed_hour_ms = now_ms - now_ms % HOUR_MS - HOUR_MS
        self.raw = ProbeLane(
            RAW_MERCHANT, self.config.raw_probe_every_s, lambda: int(time.time() * 1000),
            pinned_ids(f"probe-raw-{now_ms}", partitions),
        )  # fmt: skip
        late = self.closed_hour_ms + HOUR_MS // 2
        self.rollup = ProbeLane(
            ROLLUP_MERCHANT, self.config.rollup_probe_every_s, lambda: late,
            pinned_ids(f"probe-rollup-{now_ms}", partitions),
        )  # fmt: skip

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    @property
    def step_index(self) -> int:
        return len(self.steps) - 1


def every(run: Run, interval_s: float, action: Any, what: str) -> threading.Thread:
    """A daemon thread calling ``action()`` every ``interval_s`` until the run stops."""

    def loop() -> None:
        while not run.stop.wait(interval_s):
            try:
                action()
            except Exception:  # a failed poll is counted and reported, never fatal
                run.error(what)

    thread = threading.Thread(target=loop, name=f"bench-{what}", daemon=True)
    thread.start()
    return thread


def start_threads(run: Run) -> list[threading.Thread]:
    config = run.config
    span_ms = int(len(config.paths) * len(config.rates) * config.step_seconds * 1000)
    raw_start = int(run.t0 * 1000) - int(run.t0 * 1000) % MINUTE_MS
    raw_end = raw_start + span_ms + 10 * MINUTE_MS
    hour = run.closed_hour_ms

    def send_raw() -> None:
        if run.sending.is_set():
            run.raw.send_one(run.transport, run.step_index)

    def send_rollup() -> None:
        if run.sending.is_set():
            run.rollup.send_one(run.transport, run.step_index)

    def poll_raw() -> None:
        count = raw_count(run.gql, RAW_MERCHANT, raw_start, raw_end)
        run.raw.observe(count, time.time())

    def poll_rollup() -> None:
        # Seen = in the rollup documents AND counted in a bucket GraphQL calls complete.
        in_rollups = rollup_events(run.engine, run.names.rollups_alias, ROLLUP_MERCHANT, hour)
        complete = complete_hour_count(run.gql, ROLLUP_MERCHANT, hour)
        run.rollup.observe(min(in_rollups, complete), time.time())

    return [
        every(run, config.raw_probe_every_s, send_raw, "send_raw_probe"),
        every(run, config.rollup_probe_every_s, send_rollup, "send_rollup_probe"),
        every(run, config.raw_poll_s, poll_raw, "poll_raw"),
        every(run, config.rollup_poll_s, poll_rollup, "poll_rollup"),
        every(run, config.sample_s, lambda: sample(run), "sample"),
    ]


def sample(run: Run) -> None:
    """One row of the time series: CPU cores per component, lag, watermark ages."""
    now = time.time()
    cores = {name: round(value, 3) for name, value in run.cpu.sample().items()}
    row: dict[str, Any] = {"t": round(now - run.t0, 2), "cpu": cores, "load1": load1()}
    try:
        row["lag"], row["committed"] = run.lag.lag()
    except Exception:  # Kafka admin calls can time out under load; the gap is shown
        row["lag"] = None
        run.error("lag")
    try:
        ingested, rolled = freshness(run.gql, RAW_MERCHANT)
        row["ingested_age_s"] = None if ingested is None else round(now - ingested, 2)
        row["rolled_age_s"] = None if rolled is None else round(now - rolled, 2)
    except Exception:
        run.error("freshness")
    run.samples.append(row)


def load1() -> float:
    """The 1-minute load average: the machine is shared, so each sample says how busy it was."""
    return round(os.getloadavg()[0], 2)


def run_step(run: Run, path: str, rate: float, last: bool) -> Step:
    """Hold ``rate`` events/s on ``path`` for one step, with probes on the same path."""
    step = Step(path, rate, time.time())
    run.steps.append(step)
    run.transport.path = path
    target = run.stack.collector_url if path == "collector" else run.stack.kafka_bootstrap
    cmd = [
        sys.executable, "-m", "bench.sender", "--to", path, "--target", target,
        "--topic", run.lag.topic, "--rate", str(rate),
        "--duration", str(run.config.step_seconds), "--seed", str(len(run.steps)),
    ]  # fmt: skip
    env = {**os.environ, "PULSE_WRITE_KEY": run.transport.write_key}  # not on the command line
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    run.cpu.add("loadgen", proc.pid)
    run.sending.set()
    out, _ = proc.communicate(timeout=run.config.step_seconds * 3 + 60)
    run.sending.clear()
    step.ended = time.time()
    lines = out.strip().splitlines()
    step.sender = json.loads(lines[-1]) if proc.returncode == 0 and lines else {"sent": 0}
    step.settle_s = None if last else settle(run, rate)  # after the last: drain()
    settled = "-" if step.settle_s is None else f"{step.settle_s}s"
    console.print(f"  {path} {rate:.0f}/s: sent {step.sender}, backlog drained in {settled}")
    return step


def settle(run: Run, rate: float) -> float | None:
    """Wait (bounded) for the step's backlog to drain, so steps are measured independently.

    Returns the seconds it took, or None when the backlog outlived ``settle_s``: the step's
    rate was above what the stack sustains on this machine.
    """
    started = time.monotonic()
    threshold = max(200.0, rate)  # about a second of traffic: bulks in flight
    while time.monotonic() - started < run.config.settle_s:
        lags = [r["lag"] for r in run.samples[-2:] if r.get("lag") is not None]
        if (
            len(lags) == 2
            and max(lags) <= threshold
            and run.samples[-2]["t"] > run.steps[-1].ended - run.t0
        ):
            return round(time.monotonic() - started, 1)
        time.sleep(0.5)
    return None


def drain(run: Run) -> None:
    """Wait, bounded, for the probes still outstanding after the last step."""
    started = time.monotonic()
    raw_deadline = started + run.config.raw_drain_s
    rollup_deadline = started + run.config.rollup_drain_s
    while True:
        now = time.monotonic()
        raw_open = run.raw.outstanding() > 0 and now < raw_deadline
        rollup_open = run.rollup.outstanding() > 0 and now < rollup_deadline
        if not (raw_open or rollup_open):
            return
        time.sleep(0.5)


def storage(client: OpenSearch, names: Names) -> dict[str, Any]:
    """Average raw document size from the engine's _stats, and rollup docs per raw event."""
    client.indices.refresh(
        index=f"{names.events_alias},{names.rollups_alias}", ignore_unavailable=True
    )
    raw = client.indices.stats(index=names.events_alias)["_all"]["primaries"]
    docs = int(raw["docs"]["count"])
    store = int(raw["store"]["size_in_bytes"])
    body = {"size": 0, "track_total_hits": True}
    hits = client.search(index=names.rollups_alias, body=body, ignore_unavailable=True)["hits"]
    rollup_docs = int(hits["total"]["value"])
    return {
        "raw_docs": docs,
        "raw_store_bytes": store,
        "avg_raw_doc_bytes": round(store / docs, 1) if docs else None,
        "rollup_docs": rollup_docs,
        "rollup_docs_per_raw_event": round(rollup_docs / docs, 5) if docs else None,
        "note": "rollups cover closed hours only (open hours are deferred), and the bench's "
        "load is in the open hour: the reduction factor is the rollups bench's to measure",
    }


def offsets_check(run: Run) -> dict[str, Any]:
    """Do the broker's end offsets add up to what was produced? (Tansu once looked off.)"""
    produced = sum(int(s.sender.get("sent", 0)) for s in run.steps)
    produced += len(run.raw.probes) + len(run.rollup.probes)
    ends = run.lag.end_offsets()
    reported = run.lag.reported_end_offsets()
    committed = run.lag.committed()
    return {
        "produced": produced,
        "sum_reported_end_offsets": sum(reported.values()),
        "sum_read_end_offsets": sum(ends.values()),
        "sum_committed": sum(committed.values()),
        "reported_end_offsets_match_produced": sum(reported.values()) == produced,
        "read_end_offsets_match_produced": sum(ends.values()) == produced,
        "partitions": len(ends),
    }


def execute(config: E2EConfig) -> dict[str, Any]:
    """Run the whole benchmark and return the JSON document (docs/benchmarks.md, E2E)."""
    load_start = machine.load_average()
    with pulse_up(config.stack_env()) as stack:
        names = Names(namespace=stack.namespace)
        settings = Settings(namespace=stack.namespace)
        client = opensearch_client(stack.opensearch_url)
        key, _ = create_key(client, names, None, True, "bench e2e")
        run = Run(
            config=config,
            stack=stack,
            gql=GraphQL(stack.graphql_url, key),
            transport=Transport(
                stack.collector_url,
                kafka_producer(stack.kafka_bootstrap),
                names.topic_raw,
                create_key(client, names, None, True, "bench e2e load", write=True)[0],
            ),
            cpu=CpuSampler(stack.pids),
            lag=LagSampler(
                stack.kafka_bootstrap, names.topic_raw, names.group(settings.indexer_group)
            ),
            engine=client,
            names=names,
        )
        try:
            return measure(run, load_start)
        finally:
            run.stop.set()
            run.transport.close()
            run.transport.producer.close(timeout=10)
            run.lag.close()
            run.gql.close()


def measure(run: Run, load_start: list[float]) -> dict[str, Any]:
    threads = start_threads(run)
    plan = [(path, rate) for path in run.config.paths for rate in run.config.rates]
    for i, (path, rate) in enumerate(plan):
        run_step(run, path, rate, last=i == len(plan) - 1)
    drain(run)
    run.stop.set()
    for thread in threads:
        thread.join(timeout=15)
    return document(run, load_start)


def document(run: Run, load_start: list[float]) -> dict[str, Any]:
    lanes = {"raw": run.raw, "rollup": run.rollup}
    steps = [step_figures(s, i, run.t0, run.samples, lanes) for i, s in enumerate(run.steps)]
    config = run.config
    return {
        "schema": SCHEMA,
        "quick": config.quick,
        "config": {
            "rates": list(config.rates),
            "step_seconds": config.step_seconds,
            "paths": list(config.paths),
            "rollup_interval_s": config.rollup_interval_s,
            "raw_probe_every_s": config.raw_probe_every_s,
            "rollup_probe_every_s": config.rollup_probe_every_s,
            "raw_poll_s": config.raw_poll_s,
            "rollup_poll_s": config.rollup_poll_s,
            "settle_s": config.settle_s,
        },
        "machine": {**machine.describe(), "load_average_start": load_start,
                    "load_average_end": machine.load_average()},
        "steps": steps,
        "targets": targets(steps, config.rollup_interval_s, config.rollup_probe_every_s),
        "offsets_check": _safe(lambda: offsets_check(run), run, "offsets_check"),
        "storage": _safe(lambda: storage(run.engine, run.names), run, "storage"),
        "errors": run.errors,
        "timeseries": run.samples,
        "probes": {n: [_probe_row(p, run.t0) for p in lane.probes] for n, lane in lanes.items()},
    }  # fmt: skip


def _probe_row(probe: Any, t0: float) -> list[Any]:
    latency = probe.latency_s
    return [
        round(probe.sent_at - t0, 3),
        None if latency is None else round(latency, 3),
        probe.step,
    ]


def _safe(make: Any, run: Run, what: str) -> Any:
    try:
        return make()
    except Exception as exc:  # reported in the document rather than losing the whole run
        run.error(what)
        return {"error": type(exc).__name__}


def run_and_write(config: E2EConfig, out: Path) -> dict[str, Any]:
    """Run, then write ``e2e[-quick].json`` and the PNG plots into ``out``."""
    from bench.plots import plot_all

    console.print(f"[bold]pulse bench e2e[/bold] rates={config.rates} paths={config.paths}")
    doc = execute(config)
    out.mkdir(parents=True, exist_ok=True)
    stem = "e2e-quick" if config.quick else "e2e"
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    plot_all(doc, out, stem)
    print(json.dumps({k: doc[k] for k in ("steps", "targets", "offsets_check", "storage")}))
    return doc
