"""``python -m bench.shards``: what a rollup shard costs, for the capacity model.

One closed "lunch hour" of ``events`` loadgen events (Zipf merchants) is written straight into
the raw indices. Then, for each worker count W (the same raw data; rollups and shard state
reset in between), W ``RollupJob`` workers over ``shards`` shards each run once,
one after another in this process, so each one's CPU is its own (``getrusage``) and the
engine's CPU (embedded engine: psutil) is attributed run by run. The first configuration,
one worker over one shard, is the unsharded job: the same-run baseline.

Every worker pays for the pair scan (``compute.changed_pairs`` over every merchant: the
engine cannot filter by a merchant hash without scripts) and for its shards' recompute; the
scan is also timed alone. Reported per million events of the hour: the scan's job and engine
CPU (paid by every worker), the shard work's (divided among the workers), and the slowest
worker's wall time. Prints one JSON document; ``--repeat`` runs give medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from typing import Any

import psutil
from opensearchpy import OpenSearch

from bench.machine import bench_engine
from bench.rollups import RawWriter, _cpu_s, _self_cpu_s
from ingest.contract import validate
from ingest.loadgen import Generator, LoadSpec, days_ago_ms
from pulse.clients import opensearch_client
from pulse.naming import Names, names_for
from pulse.settings import Settings, get_settings
from rollups import compute
from rollups.job import RollupJob, wall_clock_ms
from storage.rollup_schema import HOUR_MS


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _reset(client: OpenSearch, names: Names) -> None:
    """Forget every rollup and every rollups bookkeeping document (not the raw data)."""
    client.indices.delete(index=names.rollups_pattern, ignore_unavailable=True)
    if client.indices.exists(index=names.state_index):
        body = {"query": {"exists": {"field": "rollups"}}}
        client.delete_by_query(index=names.state_index, body=body, refresh=True)


def _timed(engine: psutil.Process | None, work: Any) -> tuple[Any, dict[str, float]]:
    cpu0, eng0, t0 = _self_cpu_s(), _cpu_s(engine), time.perf_counter()
    result = work()
    return result, {
        "wall_s": time.perf_counter() - t0,
        "job_cpu_s": _self_cpu_s() - cpu0,
        "engine_cpu_s": _cpu_s(engine) - eng0,
    }


def one_config(
    client: OpenSearch,
    settings: Settings,
    engine: psutil.Process | None,
    shards: int,
    workers: int,
    through: int,
) -> dict[str, Any]:
    """W workers over S shards, run one after another; each worker's own costs."""
    names = names_for(settings)
    _reset(client, names)
    config = settings.model_copy(update={"rollup_shards": shards})
    jobs = [RollupJob(client, config, names, owner=f"bench-{i}") for i in range(workers)]
    jobs[0].bootstrap()
    for job in jobs:  # every worker is up before the first run: each keeps its share
        job.leases.heartbeat(wall_clock_ms())
    runs = []
    for job in jobs:
        report, cost = _timed(engine, lambda job=job: job.run_once(through_ms=through))
        runs.append({**cost, "shards": len(report.committed), "pairs": report.pairs})
    for job in jobs:
        job.release()
    done = sum(r["shards"] for r in runs)
    if done != shards:
        raise RuntimeError(f"{done} of {shards} shards committed: a worker did not run")
    return {
        "shards": shards,
        "workers": workers,
        "runs": runs,
        "slowest_wall_s": max(r["wall_s"] for r in runs),
        "job_cpu_s": sum(r["job_cpu_s"] for r in runs),
        "engine_cpu_s": sum(r["engine_cpu_s"] for r in runs),
    }


def scan_cost(
    client: OpenSearch, settings: Settings, engine: psutil.Process | None, through: int
) -> dict[str, float]:
    """The pair scan alone, as every worker runs it at the start of the closing run."""
    names = names_for(settings)
    page = settings.rollup_page_size
    pairs, cost = _timed(
        engine, lambda: compute.changed_pairs(client, names.events_alias, None, through, page)
    )
    return {**cost, "pairs": len(pairs)}


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def run(
    events: int, merchants: int, shards: int, workers: list[int], repeat: int
) -> dict[str, Any]:
    base = get_settings()
    with bench_engine(base) as engine:
        proc, url = engine.process, engine.url
        client = opensearch_client(url, timeout_s=300)
        settings = base.model_copy(
            update={"opensearch_url": url, "namespace": f"benchs{uuid.uuid4().hex[:6]}"}
        )
        hour = days_ago_ms(2) + 12 * HOUR_MS  # a closed lunch hour
        gen = Generator(LoadSpec(merchants=merchants, seed=23))
        stream = (validate(e) for e in gen.events(events, hour, hour + HOUR_MS))
        written = RawWriter(client, settings, names_for(settings)).write(stream, lambda _: hour)
        _log(f"indexed {written} raw events of one hour")
        through = wall_clock_ms()
        configs = [(1, 1)] + [(shards, w) for w in workers]  # (1, 1): the unsharded baseline
        rounds: list[dict[str, Any]] = []
        for r in range(repeat):
            found = {"scan": scan_cost(client, settings, proc, through)}
            for s, w in configs:
                done = found[f"{s}x{w}"] = one_config(client, settings, proc, s, w, through)
                _log(f"round {r + 1}: {s} shards, {w} workers: {done['slowest_wall_s']:.1f}s")
            rounds.append(found)
        return summarize(written, configs, rounds, engine.embedded)


def summarize(
    events: int, configs: list[tuple[int, int]], rounds: list[dict[str, Any]], embedded: bool
) -> dict[str, Any]:
    """Medians per million events of the hour; the shard work = the baseline less its scan."""
    per_m = 1_000_000 / events
    scan_job = _median([r["scan"]["job_cpu_s"] * per_m for r in rounds])
    scan_engine = _median([r["scan"]["engine_cpu_s"] * per_m for r in rounds])
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load1_end": round(os.getloadavg()[0], 2)},
        "engine": "embedded osmem" if embedded else "configured",
        "events": events,
        "repeat": len(rounds),
        "scan_job_cpu_s_per_m": scan_job,
        "scan_engine_cpu_s_per_m": scan_engine,
        # The scan's job CPU follows the merchant-hours it returns, not the events.
        "scan_pairs": rounds[0]["scan"]["pairs"],
        "scan_job_cpu_us_per_pair": _median(
            [r["scan"]["job_cpu_s"] * 1e6 / max(1, r["scan"]["pairs"]) for r in rounds]
        ),
        "configs": [],
    }
    base_job = _median([r["1x1"]["job_cpu_s"] * per_m for r in rounds])
    base_engine = _median([r["1x1"]["engine_cpu_s"] * per_m for r in rounds])
    for s, w in configs:
        key = f"{s}x{w}"
        job = _median([r[key]["job_cpu_s"] * per_m for r in rounds])
        out["configs"].append(
            {
                "shards": s,
                "workers": w,
                "job_cpu_s_per_m": job,
                "engine_cpu_s_per_m": _median([r[key]["engine_cpu_s"] * per_m for r in rounds]),
                "slowest_worker_wall_s": _median([r[key]["slowest_wall_s"] for r in rounds]),
                "job_cpu_ratio_to_unsharded": round(job / base_job, 3) if base_job else None,
            }
        )
    # What the capacity model divides among workers: the baseline's cost less its one scan.
    out["shard_work_job_cpu_s_per_m"] = round(base_job - scan_job, 3)
    out["shard_work_engine_cpu_s_per_m"] = round(base_engine - scan_engine, 3)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--merchants", type=int, default=400)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    print(json.dumps(run(args.events, args.merchants, args.shards, workers, args.repeat), indent=2))


if __name__ == "__main__":
    main()
