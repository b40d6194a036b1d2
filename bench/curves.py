"""``pulse bench curves``: how query time, indexer cost and rollup cost grow (issue 20).

Three curves, each point the median of ``runs`` runs, each with its same-run baseline:

- **query**: the 30-day hourly and 90-day daily reports of ``bench.query`` for the biggest
  merchant at growing raw sizes (a fresh namespace per size, loaded and fully rolled up),
  p95 on the rollup path (``forceSource: AUTO``) and forced to raw. Baselines: the
  raw path in the same run, and the smallest size for the scaling ratios.
- **indexer**: ``bench.indexer.measure`` (the indexer in-process, CPU-µs per event) at several
  ``bulk_max_docs``, runs interleaved across batch sizes; baseline: the same documents sent
  straight to ``_bulk`` in the same batches, same run.
- **rollups**: ``bench.rollups.full_cost`` (one full rollup run over one day of raw events)
  at several volumes, interleaved; job CPU, engine CPU (embedded engine) and wall seconds;
  baseline: the smallest volume's cost per event.

Engines: those configured (``PULSE_OPENSEARCH_URL``, ``PULSE_KAFKA_BOOTSTRAP``), else embedded
ones started for the run and stopped after it. Every namespace the run writes is deleted.
Writes ``<stem>.json`` (every raw figure, the machine and its load per run) and three PNGs
(bench.curve_plots), and prints a table.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
from opensearchpy import OpenSearch

from bench import curve_plots, indexer, query, rollups
from bench.machine import describe, load_average
from ingest.loadgen import Generator, LoadSpec, Returning, days_ago_ms
from pulse.clients import Endpoints, opensearch_client
from pulse.engines import start_embedded
from pulse.naming import names_for
from pulse.settings import Settings
from storage import rollup_schema as rs

SCHEMA = 1
QUERY_REPORTS = ("30d_hourly", "90d_daily")
QUERY_PATHS = {"normal": "rollup", "forced_raw": "raw"}  # bench.query's keys -> curve names


@dataclass(frozen=True)
class CurvesConfig:
    """Sizes of each curve (strictly increasing) and how many runs make a point."""

    query_events: tuple[int, ...] = (25_000, 50_000, 100_000)
    requests: int = 40  # per report, path and run: p95 of 40 is the second-slowest
    index_batches: tuple[int, ...] = (500, 2_000, 5_000)
    index_events: int = 20_000
    rollup_events: tuple[int, ...] = (10_000, 20_000, 40_000)
    runs: int = 3
    merchants: int = 200
    seed: int = 7
    stages: tuple[str, ...] = ("indexer", "rollups", "query")

    def __post_init__(self) -> None:
        for name in ("query_events", "index_batches", "rollup_events"):
            sizes = getattr(self, name)
            if len(sizes) < 2 or sizes[0] < 1 or list(sizes) != sorted(set(sizes)):
                raise ValueError(f"{name}: at least two strictly increasing sizes, got {sizes}")
        if self.runs < 1 or self.requests < 2 or self.index_events < 1:
            raise ValueError("runs >= 1, requests >= 2 and index_events >= 1 are needed")
        unknown = set(self.stages) - {"indexer", "rollups", "query"}
        if unknown or not self.stages:
            raise ValueError(f"stages: some of indexer, rollups, query; got {self.stages}")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 3)


def _load1() -> float:
    return load_average()[0]


def _medians(runs: list[dict[str, Any]], keys: Sequence[str]) -> dict[str, float]:
    return {k: _median([r[k] for r in runs]) for k in keys}


def _ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base, 3) if value is not None and base else None


# --- query -------------------------------------------------------------------------------


def query_curve(
    client: OpenSearch,
    settings: Settings,
    config: CurvesConfig,
    engine: psutil.Process | None = None,
    on_point: Callable[[list[dict[str, Any]], list[dict[str, Any]]], None] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per size, a fresh namespace: load, roll everything up, time the reports ``runs``
    times, delete it. Sizes cannot be interleaved (a load and its full rollup are the costly
    part), so each point's baseline is the raw path timed in the same run.

    With the embedded ``engine``'s process, a size its memory would not hold (the growth per
    event measured at the largest point so far, against the machine's available memory) is
    not loaded: it is returned among the skipped sizes with the reason (as are larger ones).
    ``on_point`` sees the points (and skipped sizes) after each size, so a long run that
    stops keeps what it measured. Returns (points, skipped)."""
    points: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    per_event = 0.0  # engine bytes per loaded event, from the largest point measured
    for size in config.query_events:
        reason = _too_big(per_event, size, psutil.virtual_memory().available) if engine else None
        if reason is not None:  # and so for every larger size
            skipped.append({"raw_events": size, "reason": reason})
            _log(f"query: {size} raw events skipped: {skipped[-1]['reason']}")
            continue
        # Not one namespace topped up: ``query.load`` stamps events as ingested in the past
        # (their own time + 2 s, with arrival bounds to match), so a second load lands below
        # the rollup watermark and ``catch_up`` would not see it.
        mine = query.bench_settings(settings, f"benchcq{uuid.uuid4().hex[:8]}")
        rss_before = engine.memory_info().rss if engine else 0
        try:
            points.append(_query_point(client, mine, config, size))
            if engine:
                rss = engine.memory_info().rss
                points[-1]["engine_rss_gb"] = round(rss / 1e9, 2)
                per_event = max(per_event, (rss - rss_before) / size)
        finally:
            client.indices.delete(index=f"{mine.namespace}*", ignore_unavailable=True)
        if on_point is not None:
            on_point(points, skipped)
    base = points[0]["median"]
    for point in points:
        point["ratio_to_smallest"] = {
            k: _ratio(v, base[k]) for k, v in point["median"].items() if k.endswith("p95_ms")
        }
    return points, skipped


MEMORY_HEADROOM = 0.75  # of the available memory a load may take: the OS, the bench, the rest


def _too_big(per_event_bytes: float, size: int, available_bytes: int) -> str | None:
    """Why the engine cannot load ``size`` more events, or None when it fits (or no growth
    has been measured yet: the first size always runs)."""
    need = per_event_bytes * size
    if need <= available_bytes * MEMORY_HEADROOM:
        return None
    return (
        f"engine memory: about {need / 1e9:.1f} GB needed ({per_event_bytes / 1e3:.1f} KB per "
        f"event measured), {available_bytes / 1e9:.1f} GB available"
    )


def _query_point(
    client: OpenSearch, settings: Settings, config: CurvesConfig, size: int
) -> dict[str, Any]:
    names = names_for(settings)
    spec = LoadSpec(merchants=config.merchants, seed=config.seed, returning=Returning())
    load_s = query.load(client, settings, names, size, spec)
    before = time.time_ns() // 1_000_000
    rollup_s = query.build_rollups(client, settings, names)
    if rollup_s is None:
        raise RuntimeError("rollups.job offers no catch_up: the rollup path cannot be timed")
    total = query.count_events(client, names)
    # catch_up rolls up the hours closed at its start (between ``before`` and now); shop
    # sessions near the end of the loaded span can spill into the open hour, served from raw.
    closed = {
        t: _events_before(client, settings, rs.hour_start(t))
        for t in (before, time.time_ns() // 1_000_000)
    }
    rolled_up = _rolled_up_events(client, settings)
    if rolled_up not in closed.values():  # the rollup path would be timed on stale rollups
        raise RuntimeError(f"rollups count {rolled_up} events of the {closed} in closed hours")
    _log(f"query: {total} raw events (load {load_s:.0f}s, rollups {rollup_s:.0f}s)")
    runs = []
    for r in range(config.runs):
        found = query.measure(settings, client, config.requests, customers=False)
        runs.append({"load1": _load1(), **_query_figures(found)})
        _log(f"query {total}: run {r + 1} {runs[-1]}")
    return {
        "raw_events": total,
        "rolled_up_events": rolled_up,
        "merchant_events": query.merchant_events(client, names),
        "load_s": round(load_s, 1),
        "rollup_catch_up_s": round(rollup_s, 1),
        "runs": runs,
        "median": _medians(runs, [k for k in runs[0] if k != "load1"]),
    }


def _rolled_up_events(client: OpenSearch, settings: Settings) -> int:
    """Raw events the merchant-hour totals count, over every merchant."""
    names = names_for(settings)
    client.indices.refresh(index=names.rollups_pattern, allow_no_indices=True)
    body = {"size": 0, "query": rs.TOTALS_ONLY, "aggs": {"n": {"sum": {"field": rs.EVENTS}}}}
    found = client.search(index=names.rollups_alias, body=body)
    return int(found["aggregations"]["n"]["value"])


def _events_before(client: OpenSearch, settings: Settings, end_ms: int) -> int:
    """Raw events that occurred before ``end_ms``."""
    body = {"query": {"range": {"occurred_at": {"lt": end_ms, "format": "epoch_millis"}}}}
    return int(client.count(index=names_for(settings).events_alias, body=body)["count"])


def _query_figures(found: dict[str, Any]) -> dict[str, float]:
    """Flat p50/p95 per report and path, and the raw/rollup p95 ratio of this run."""
    out: dict[str, float] = {}
    for report in QUERY_REPORTS:
        for key, path in QUERY_PATHS.items():
            out[f"{report}_{path}_p50_ms"] = found[report][key]["p50_ms"]
            out[f"{report}_{path}_p95_ms"] = found[report][key]["p95_ms"]
        rollup, raw = out[f"{report}_rollup_p95_ms"], out[f"{report}_raw_p95_ms"]
        out[f"{report}_raw_over_rollup_p95"] = round(raw / rollup, 3) if rollup else 0.0
    return out


# --- indexer -----------------------------------------------------------------------------

INDEXER_KEYS = (
    "cpu_us_per_event",
    "busy_cpu_us_per_event",
    "events_per_s",
    "baseline_events_per_s",
    "ratio",
    "idle_cpu_ms_per_s",
)


def indexer_curve(settings: Settings, ep: Endpoints, config: CurvesConfig) -> list[dict[str, Any]]:
    """The indexer at each batch size, runs interleaved (batch sizes alternate under the same
    load); the raw ``_bulk`` baseline uses the same batch size in the same run."""
    events = indexer.generate(config.index_events, 2, config.seed)
    runs: dict[int, list[dict[str, Any]]] = {b: [] for b in config.index_batches}
    for r in range(config.runs):
        for batch in config.index_batches:
            batched = settings.model_copy(update={"bulk_max_docs": batch})
            found = indexer.measure(batched, ep, events)
            runs[batch].append({"load1": _load1(), **{k: found[k] for k in INDEXER_KEYS}})
            _log(f"indexer batch {batch}: run {r + 1} {runs[batch][-1]}")
    return [
        {
            "batch_docs": batch,
            "events": len(events),
            "runs": rows,
            "median": _medians(rows, INDEXER_KEYS),
        }
        for batch, rows in runs.items()
    ]


# --- rollups -----------------------------------------------------------------------------

ROLLUP_KEYS = ("wall_s", "job_cpu_s", "engine_cpu_s")


def rollup_curve(
    client: OpenSearch, settings: Settings, engine: psutil.Process | None, config: CurvesConfig
) -> list[dict[str, Any]]:
    """One full rollup run over one day of ``volume`` raw events, volumes interleaved, each
    in a namespace of its own that is deleted afterwards."""
    runs: dict[int, list[dict[str, Any]]] = {v: [] for v in config.rollup_events}
    for r in range(config.runs):
        for volume in config.rollup_events:
            ns = f"benchc{uuid.uuid4().hex[:8]}"
            mine = settings.model_copy(update={"namespace": ns})
            gen = Generator(LoadSpec(merchants=config.merchants, seed=17))
            try:
                job, first = rollups.full_cost(client, mine, gen, days_ago_ms(2), volume, engine)
                job.release()
            finally:
                client.indices.delete(index=f"{ns}*", ignore_unavailable=True)
            full = first["full_run"]
            row: dict[str, Any] = {
                "load1": _load1(),
                "raw_events": first["raw_events"],
                "merchant_hours": first["merchant_hours"],
                "rollup_docs": first["rollup_docs"],
            }
            for key in ROLLUP_KEYS:
                # A configured engine's CPU is not this machine's to read.
                value = None if key == "engine_cpu_s" and engine is None else full[key]
                row[key] = value
                per_m = None if value is None else round(value * 1e6 / row["raw_events"], 1)
                row[f"{key}_per_million_raw"] = per_m
            runs[volume].append(row)
            _log(f"rollups {volume}: run {r + 1} {row}")
    points: list[dict[str, Any]] = []
    base: dict[str, float] = {}
    for volume, rows in runs.items():
        keys = [k for k, v in rows[0].items() if k != "load1" and v is not None]
        median = _medians(rows, keys)
        base = base or median
        # Cost per event against the smallest volume's: 1.0 = linear in the volume.
        ratios = {k: _ratio(v, base[k]) for k, v in median.items() if k.endswith("_million_raw")}
        points.append(
            {"volume": volume, "runs": rows, "median": median, "ratio_to_smallest": ratios}
        )
    return points


# --- the run -----------------------------------------------------------------------------


def run(settings: Settings, config: CurvesConfig, out: Path, stem: str, command: str) -> Path:
    """Every stage of ``config``; writes ``<stem>.json`` and the PNGs into ``out``, prints a
    table, returns the JSON's path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.json"
    started = start_embedded(settings.opensearch_url, settings.kafka_bootstrap)
    try:
        os_url = settings.opensearch_url or _address(started.opensearch)
        kafka = settings.kafka_bootstrap or _address(started.kafka)
        mine = settings.model_copy(
            update={"opensearch_url": os_url, "kafka_bootstrap": kafka, "log_json": False}
        )
        engine = psutil.Process(started.opensearch.pid) if started.opensearch else None
        client = opensearch_client(os_url, timeout_s=600)
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "command": command,
            "machine": describe(),
            "engines": "embedded" if started.opensearch else "configured",
            "config": asdict(config),
            "load_start": load_average(),
        }

        def partial(points: list[dict[str, Any]], skipped: list[dict[str, Any]]) -> None:
            doc["query"] = {"points": points, "skipped": skipped, "partial": True}
            path.write_text(json.dumps(doc, indent=2) + "\n")

        stages: dict[str, Callable[[], tuple[list[dict[str, Any]], list[dict[str, Any]]]]] = {
            "indexer": lambda: (indexer_curve(mine, Endpoints(os_url, kafka), config), []),
            "rollups": lambda: (rollup_curve(client, mine, engine, config), []),
            "query": lambda: query_curve(client, mine, config, engine, partial),
        }
        for name in config.stages:
            t0, load0 = time.perf_counter(), load_average()
            points, skipped = stages[name]()
            doc[name] = {
                "points": points,
                "skipped": skipped,
                "load_before": load0,
                "load_after": load_average(),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            path.write_text(json.dumps(doc, indent=2) + "\n")  # kept if a later stage fails
        doc["load_end"] = load_average()
    finally:
        started.stop()
    path.write_text(json.dumps(doc, indent=2) + "\n")
    doc["plots"] = [str(p) for p in curve_plots.plot_all(doc, out, stem)]
    print(table(doc))
    return path


def _address(engine: Any) -> str:
    if engine is None:
        raise RuntimeError("no engine address: neither configured nor started")
    return str(engine.address)


TABLE_LINES = {
    "query": "query {p[raw_events]:>9} events: 30d hourly p95 rollup {m[30d_hourly_rollup_p95_ms]}"
    " raw {m[30d_hourly_raw_p95_ms]} ms; 90d daily p95 rollup {m[90d_daily_rollup_p95_ms]}"
    " raw {m[90d_daily_raw_p95_ms]} ms",
    "indexer": "indexer batch {p[batch_docs]:>6}: {m[cpu_us_per_event]} CPU-us/event (busy"
    " {m[busy_cpu_us_per_event]}), {m[events_per_s]} ev/s vs _bulk {m[baseline_events_per_s]}"
    " ev/s (ratio {m[ratio]})",
    "rollups": "rollups {p[volume]:>9} events: wall {m[wall_s]} s, job CPU {m[job_cpu_s]} s,"
    " engine CPU {m[engine_cpu_s]} s; job CPU s/M {m[job_cpu_s_per_million_raw]}",
}


def table(doc: dict[str, Any]) -> str:
    """The medians of every point, one line each."""
    lines = [f"load at start {doc['load_start']}, at end {doc['load_end']}"]
    for stage, line in TABLE_LINES.items():
        for p in doc.get(stage, {}).get("points", []):
            lines.append(line.format(p=p, m={"engine_cpu_s": None, **p["median"]}))
        for skipped in doc.get(stage, {}).get("skipped", []):
            lines.append(
                f"{stage} {skipped['raw_events']:>9} events: skipped ({skipped['reason']})"
            )
    return "\n".join(lines)
