"""``pulse bench rollups``: what the rollup job costs and how fast its results become complete.

Cost: ``events`` loadgen events (Zipf merchants, the day shape) over one past UTC day are
written straight into the raw indices; one run rolls them all up. Reported per million raw
events: wall seconds, engine CPU seconds (when the bench started the engine) and job-process
CPU seconds; and rollup documents per raw event (the reduction factor). An incremental run
(1% new events, some late) shows the steady-state path.

Latency: a virtual clock (real time + a fixed offset) puts an hour boundary a few seconds
ahead; a feeder indexes ``rate`` events/s stamped with virtual time while the scheduler runs
every ``interval`` s. Measured: seconds from the boundary until the top merchant's
``rolledUpThrough`` passes it ("an hour is rolled up within 5 minutes of closing"), and
seconds from ingesting events 2 h and 3 days late until their hours are rolled up and
servable ("reflected within two job intervals"). Prints one JSON document on stdout.
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psutil
from opensearchpy import OpenSearch, helpers

from bench.machine import bench_engine
from ingest.contract import Event, validate
from ingest.loadgen import DAY_MS, Generator, LoadSpec, days_ago_ms
from pulse.clients import opensearch_client
from pulse.naming import Names, day_of, names_for
from pulse.settings import Settings, get_settings
from rollups import state
from rollups.job import RollupJob, RunReport, visibility_margin_ms, wall_clock_ms
from rollups.scheduler import RollupScheduler
from storage import rollup_schema as rs
from storage.templates import ensure_templates, write_target

Stamp = Callable[[Event], int]  # the ingested_at given to an event
LEAD_MS = 15_000  # the virtual hour boundary falls this long after the live part starts


@dataclass(frozen=True)
class BenchConfig:
    events: int = 50_000
    merchants: int = 200
    rate: float = 100.0
    interval_s: int | None = None  # None: settings.rollup_interval_s
    margin_s: float = -1.0  # < 0: the settings' (derived) visibility margin
    latency: bool = True
    reduction_events: tuple[int, ...] = (100_000, 1_000_000)  # offline reduction factor


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cpu_s(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    times = proc.cpu_times()
    return float(times.user + times.system)


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class RawWriter:
    """Raw documents into the generation's day indices, as the indexer would write them."""

    def __init__(self, client: OpenSearch, settings: Settings, names: Names) -> None:
        self.client, self.settings, self.names = client, settings, names
        self._days: dict[Any, str] = {}
        ensure_templates(client, settings, names)

    def actions(self, events: Iterator[Event], ingested_at: Stamp) -> Iterator[Any]:
        for event in events:
            day = day_of(event.occurred_at_ms)
            if day not in self._days:
                gen = self.settings.generation
                self._days[day] = write_target(self.client, self.names, gen, day)
            doc = event.to_doc(ingested_at(event))
            yield {"_index": self._days[day], "_id": event.doc_id, "_source": doc}

    def write(self, events: Iterator[Event], ingested_at: Stamp) -> int:
        done = 0
        stream = self.actions(events, ingested_at)
        for ok, _ in helpers.parallel_bulk(self.client, stream, thread_count=2, chunk_size=5000):
            done += ok
        self.client.indices.refresh(index=self.names.raw_prefix(self.settings.generation) + "*")
        return done


def measure_cost(
    client: OpenSearch, settings: Settings, config: BenchConfig, engine: psutil.Process | None
) -> dict[str, Any]:
    names = names_for(settings)
    gen = Generator(LoadSpec(merchants=config.merchants, seed=17))
    day = days_ago_ms(2)
    job, first = full_cost(client, settings, gen, day, config.events, engine)
    written, full, docs = first["raw_events"], first["full_run"], first["rollup_docs"]
    extra = max(1, config.events // 100)
    late = (validate(e) for e in gen.stream(gen.events(extra, day, day + DAY_MS)))
    RawWriter(client, settings, names).write(late, _now)
    incremental = _timed_run(job, engine)
    job.release()
    per_m = 1_000_000 / written
    return {
        **first,
        "rollup_docs_per_raw_event": round(docs / written, 4),
        "wall_s_per_million_raw": round(full["wall_s"] * per_m, 1),
        "engine_cpu_s_per_million_raw": round(full["engine_cpu_s"] * per_m, 1),
        "job_cpu_s_per_million_raw": round(full["job_cpu_s"] * per_m, 1),
        "incremental_run": {"new_raw_events": extra, **incremental},
        **_sketch_sizes(client, names),
    }


def full_cost(
    client: OpenSearch,
    settings: Settings,
    gen: Generator,
    day: int,
    events: int,
    engine: psutil.Process | None,
) -> tuple[RollupJob, dict[str, Any]]:
    """Write ``events`` of ``gen`` over the UTC day starting at ``day`` into the raw indices,
    then roll them all up in one timed run. The job still holds its leases: release it."""
    names = names_for(settings)
    events_in = (validate(e) for e in gen.events(events, day, day + DAY_MS))
    started = time.perf_counter()
    written = RawWriter(client, settings, names).write(events_in, _now)
    _log(f"indexed {written} raw events in {time.perf_counter() - started:.0f}s")
    job = RollupJob(client, settings, names)
    job.bootstrap()
    full = _timed_run(job, engine)
    docs = int(client.count(index=names.rollups_alias)["count"])
    return job, {
        "raw_events": written,
        "merchant_hours": full["report"]["pairs"],
        "rollup_docs": docs,
        "full_run": full,
    }


def offline_reduction(events_per_day: int, merchants: int) -> dict[str, Any]:
    """Rollup documents per raw event for one day of loadgen traffic, counted without the
    engine (the same grouping as the job: merchant x UTC hour x dimension values)."""
    gen = Generator(LoadSpec(merchants=merchants, seed=17))
    day = days_ago_ms(2)
    keys = set()
    for e in gen.events(events_per_day, day, day + DAY_MS):
        values = tuple(str(e.get(d, rs.MISSING)) for d in rs.DIMENSIONS)
        keys.add((e["merchant_id"], rs.hour_start(validate(e).occurred_at_ms), values))
    return {
        "raw_events_per_day": events_per_day,
        "rollup_docs": len(keys),
        "rollup_docs_per_raw_event": round(len(keys) / events_per_day, 4),
    }


def _timed_run(job: RollupJob, engine: psutil.Process | None) -> dict[str, Any]:
    cpu0, eng0, t0 = _self_cpu_s(), _cpu_s(engine), time.perf_counter()
    report = job.run_once(through_ms=wall_clock_ms())
    return {
        "wall_s": round(time.perf_counter() - t0, 2),
        "job_cpu_s": round(_self_cpu_s() - cpu0, 2),
        "engine_cpu_s": round(_cpu_s(engine) - eng0, 2),
        "report": report.__dict__,
    }


def _sketch_sizes(client: OpenSearch, names: Names) -> dict[str, Any]:
    # Day packs (schema 3+) share the alias and carry no sketch: only hour documents count.
    no_packs = {"bool": {"must_not": [{"term": {rs.LEVEL: rs.LEVEL_DAY}}]}}
    body = {"size": 2000, "_source": [rs.CUSTOMERS_SKETCH], "query": no_packs}
    hits = client.search(index=names.rollups_alias, body=body)["hits"]["hits"]
    sketches = (h["_source"].get(rs.CUSTOMERS_SKETCH) for h in hits)
    sizes = sorted(len(s) * 3 // 4 for s in sketches if s)
    if not sizes:
        return {}
    return {"sketch_bytes_median": sizes[len(sizes) // 2], "sketch_bytes_max": sizes[-1]}


class VirtualClock:
    """Real time shifted so that the hour boundary ``boundary`` falls ``LEAD_MS`` from now."""

    def __init__(self, boundary: int) -> None:
        self.boundary = boundary
        self.offset = boundary - LEAD_MS - wall_clock_ms()

    def __call__(self) -> int:
        return wall_clock_ms() + self.offset


class Feeder(threading.Thread):
    """Indexes ``rate`` events/s occurring and ingested at virtual now, plus injected ones."""

    def __init__(self, writer: RawWriter, gen: Generator, rate: float, clock: VirtualClock) -> None:
        super().__init__(daemon=True)
        self.writer, self.gen, self.rate, self.clock = writer, gen, rate, clock
        self.stop = threading.Event()
        self.inject: list[Event] = []
        self.injected_at: int | None = None
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            now = self.clock()
            batch = [validate(self.gen.event_at(now)) for _ in range(int(self.rate / 4))]
            with self.lock:
                if self.inject:
                    batch += self.inject
                    self.inject = []
                    self.injected_at = now
            self.writer.write(iter(batch), _constant(now))


def _constant(value: int) -> Stamp:
    return lambda _: value


def _now(_: Event) -> int:
    return wall_clock_ms()


def _prefill(writer: RawWriter, gen: Generator, rate: float, boundary: int) -> int:
    """The closing hour's events so far (``rate``/s), each ingested when it occurred."""
    start, end = boundary - rs.HOUR_MS, boundary - LEAD_MS
    count = int(rate * (end - start) / 1000)
    rng = random.Random(5)
    events = (validate(gen.event_at(rng.randrange(start, end))) for _ in range(count))
    return writer.write(events, lambda e: e.occurred_at_ms)


def measure_latency(client: OpenSearch, settings: Settings, config: BenchConfig) -> dict[str, Any]:
    names = names_for(settings)
    gen = Generator(LoadSpec(merchants=config.merchants, seed=23))
    writer = RawWriter(client, settings, names)
    boundary = rs.hour_start(wall_clock_ms()) + rs.HOUR_MS
    prefilled = _prefill(writer, gen, config.rate, boundary)
    _log(f"prefilled the closing hour with {prefilled} events")
    clock = VirtualClock(boundary)
    job = RollupJob(client, settings, names, clock=clock)
    job.bootstrap()
    runs: list[float] = []
    sched = RollupScheduler(job, settings.rollup_interval_s, lambda r: _note(r, runs))
    feeder = Feeder(writer, gen, config.rate, clock)
    top = "m00000"  # the Zipf head: it has events in every hour
    feeder.start()
    sched.start()
    try:
        closed_s = _wait_hour_closed(client, names, top, clock, settings)
        late_s, late_hours = _wait_late_reflected(client, settings, names, feeder, clock, top)
    finally:
        feeder.stop.set()
        feeder.join()
        sched.stop()
    interval = settings.rollup_interval_s
    return {
        "interval_s": interval,
        "visibility_margin_s": visibility_margin_ms(settings) / 1000,
        "rate_events_per_s": config.rate,
        "closing_hour_events": prefilled + int(config.rate * LEAD_MS / 1000),
        "hour_rolled_up_after_close_s": closed_s,
        "late_events_reflected_after_s": late_s,
        "late_events_reflected_after_intervals": round(late_s / interval, 2),
        "late_hours": late_hours,
        "live_runs": len(runs),
        "live_run_s_max": round(max(runs), 2) if runs else None,
    }


def _note(report: RunReport, runs: list[float]) -> None:
    if report.skipped is None:
        runs.append(report.seconds)


def _deadline_s(settings: Settings) -> float:
    return visibility_margin_ms(settings) / 1000 + 4 * settings.rollup_interval_s + 120


def _wait_hour_closed(
    client: OpenSearch, names: Names, merchant: str, clock: VirtualClock, settings: Settings
) -> float:
    deadline = time.monotonic() + LEAD_MS / 1000 + _deadline_s(settings)
    while time.monotonic() < deadline:
        through = state.freshness(client, names, merchant)[1]
        if through is not None and through >= clock.boundary:
            return round((clock() - clock.boundary) / 1000, 1)
        time.sleep(0.5)
    raise TimeoutError("the closed hour was not rolled up before the bench's deadline")


def _wait_late_reflected(
    client: OpenSearch,
    settings: Settings,
    names: Names,
    feeder: Feeder,
    clock: VirtualClock,
    merchant: str,
) -> tuple[float, list[int]]:
    now = clock()
    late = [
        validate({**feeder.gen.event_at(t), "merchant_id": merchant, "event_id": uuid.uuid4().hex})
        for t in (now - 2 * rs.HOUR_MS, now - 3 * DAY_MS)
    ]
    hours = sorted(rs.hour_start(e.occurred_at_ms) for e in late)
    with feeder.lock:
        feeder.inject = late
    deadline = time.monotonic() + _deadline_s(settings)
    while time.monotonic() < deadline:
        if feeder.injected_at is not None and _reflected(client, settings, names, merchant, hours):
            return round((clock() - feeder.injected_at) / 1000, 1), hours
        time.sleep(0.5)
    raise TimeoutError("the late events were not reflected before the bench's deadline")


def _reflected(
    client: OpenSearch, settings: Settings, names: Names, merchant: str, hours: list[int]
) -> bool:
    """Both late hours are servable and their rollups count the late event (one each)."""
    now = wall_clock_ms() + 2 * rs.HOUR_MS
    for hour in hours:
        seen = state.servable(client, settings, names, merchant, hour, hour + rs.HOUR_MS, now)
        if hour not in seen.hours:
            return False
    query = {
        "bool": {
            "filter": [
                {"term": {rs.MERCHANT: merchant}},
                {"terms": {rs.HOUR: hours}},
                rs.TOTALS_ONLY,
            ]
        }
    }
    body = {"size": 0, "query": query, "aggs": {"n": {"sum": {"field": rs.EVENTS}}}}
    client.indices.refresh(index=names.rollups_pattern, allow_no_indices=True)
    result = client.search(index=names.rollups_alias, body=body, ignore_unavailable=True)
    return int((result.get("aggregations") or {}).get("n", {}).get("value") or 0) == len(hours)


def _settings(base: Settings, url: str, config: BenchConfig, suffix: str) -> Settings:
    update: dict[str, Any] = {"opensearch_url": url, "namespace": f"benchr{suffix}"}
    if config.interval_s:
        update["rollup_interval_s"] = config.interval_s
    if config.margin_s >= 0:
        update["rollup_visibility_margin_s"] = config.margin_s
    return base.model_copy(update=update)


def run(config: BenchConfig) -> dict[str, Any]:
    """Run the bench (starting an embedded engine unless PULSE_OPENSEARCH_URL is set)."""
    base = get_settings()
    with bench_engine(base) as engine:
        url, proc = engine.url, engine.process
        client = opensearch_client(url, timeout_s=300)
        run_id = uuid.uuid4().hex[:6]
        out: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "engine": "embedded osmem"}
        if not engine.embedded:
            out["engine"] = "configured"
        out["cost"] = measure_cost(client, _settings(base, url, config, run_id), config, proc)
        out["reduction_offline"] = [
            offline_reduction(n, config.merchants) for n in config.reduction_events
        ]
        if config.latency:
            live = _settings(base, url, config, run_id + "l")
            out["latency"] = measure_latency(client, live, config)
    print(json.dumps(out, indent=2))
    return out
