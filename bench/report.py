"""Turn one e2e run's raw observations into the documented JSON figures.

Per step: target and achieved rate, freshness p50/p95/p99 to the raw answer and to a complete
rollup bucket, consumer lag, CPU cores per component and CPU microseconds per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.probes import Probe
from bench.stats import mean, summary

RAW_TARGET_P95_S = 5.0
CLOSE_TARGET_S = 300.0
PRODUCTION_ROLLUP_INTERVAL_S = 60


def probe_summary(probes: Sequence[Probe], step: int) -> dict[str, Any]:
    mine = [p for p in probes if p.step == step]
    seen = [p.latency_s for p in mine if p.latency_s is not None]
    return summary(seen, len(mine))


def window(samples: Sequence[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    return [s for s in samples if start <= s["t"] <= end]


def cpu_means(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    names = sorted({n for r in rows for n in r["cpu"]})
    out: dict[str, float] = {}
    for name in names:
        value = mean([r["cpu"][name] for r in rows if name in r["cpu"]])
        if value is not None:
            out[name] = round(value, 3)
    return out


def step_figures(
    step: Any, index: int, t0: float, samples: Sequence[dict[str, Any]], lanes: dict[str, Any]
) -> dict[str, Any]:
    """The figures of one step (``step`` is a bench.e2e.Step)."""
    rows = window(samples, step.started - t0, step.ended - t0)
    achieved = float(step.sender.get("achieved_rate", 0.0))
    cores = cpu_means(rows)
    lags = [r["lag"] for r in rows if r.get("lag") is not None]
    load = mean([r["load1"] for r in rows if "load1" in r])
    done = [r for r in rows if r.get("committed") is not None]
    span = done[-1]["t"] - done[0]["t"] if len(done) > 1 else 0.0
    indexed = (done[-1]["committed"] - done[0]["committed"]) / span if span > 0 else None
    return {
        "path": step.path,
        "target_rate": step.target_rate,
        "achieved_rate": achieved,
        "sent": step.sender.get("sent", 0),
        "indexed_rate": None if indexed is None else round(indexed, 1),
        "settle_s": step.settle_s,
        "loadgen_cpu_s": step.sender.get("cpu_s"),
        "started_s": round(step.started - t0, 2),
        "duration_s": round(step.ended - step.started, 2),
        "freshness_raw_s": probe_summary(lanes["raw"].probes, index),
        "freshness_rollup_s": probe_summary(lanes["rollup"].probes, index),
        "consumer_lag": {
            "max": max(lags) if lags else None,
            "mean": round(mean(lags) or 0.0, 1) if lags else None,
            "last": lags[-1] if lags else None,
        },
        "machine_load1_mean": None if load is None else round(load, 2),
        "cpu_cores": cores,
        "cpu_us_per_event": {
            name: round(c * 1e6 / achieved, 1) for name, c in cores.items() if achieved > 0
        },
    }


def targets(
    steps: Sequence[dict[str, Any]], rollup_interval_s: int, probe_spacing_s: float
) -> dict[str, Any]:
    """The issue's targets, judged from the figures (never asserted by tests)."""
    at_2000 = [s for s in steps if s["target_rate"] >= 2000]
    raw = {
        s["path"]: {
            "p95_s": s["freshness_raw_s"]["p95"],
            "achieved_rate": s["achieved_rate"],
            "met": s["freshness_raw_s"]["p95"] is not None
            and s["freshness_raw_s"]["p95"] <= RAW_TARGET_P95_S
            and s["achieved_rate"] >= 0.95 * s["target_rate"],
        }
        for s in at_2000
    }
    rollup_max = [s["freshness_rollup_s"]["max"] for s in steps]
    worst = max((v for v in rollup_max if v is not None), default=None)
    # A closed hour's last events wait at most one interval for the next run, then the run's
    # duration. The worst late probe's lag holds raw visibility + its wait + the run; probes
    # sent every `spacing` over more than one interval mean some probe waited at least
    # (interval - spacing). So the bound at the production interval is at most
    # worst - (interval_used - spacing) + production interval.
    bound = (
        None
        if worst is None
        else worst - (rollup_interval_s - probe_spacing_s) + PRODUCTION_ROLLUP_INTERVAL_S
    )
    return {
        "raw_p95_le_5s_at_2000_per_path": raw,
        "rollup_late_event_lag_max_s": worst,
        "rollup_interval_s_used": rollup_interval_s,
        "closed_hour_complete_bound_s": None if bound is None else round(max(bound, 0.0), 1),
        "closed_hour_within_5_min": bound is not None and bound <= CLOSE_TARGET_S,
    }


def _f(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(doc: dict[str, Any]) -> str:
    """The per-step table of docs/benchmarks.md's E2E section, from an e2e JSON document."""
    rows = [
        "| path | target/s | sent/s | indexed/s | raw p50 / p95 / p99 (s) | rollup p50 / max (s) "
        "| lag max (last) | settle s | indexer cores (µs/ev) | engine cores | load1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in doc["steps"]:
        raw, rollup = s["freshness_raw_s"], s["freshness_rollup_s"]
        lag = s["consumer_lag"]
        cores, per = s["cpu_cores"], s["cpu_us_per_event"]
        engine = cores.get("opensearch", 0.0) + cores.get("kafka", 0.0)
        rows.append(
            f"| {s['path']} | {s['target_rate']:.0f} | {s['achieved_rate']:.0f} "
            f"| {_f(s.get('indexed_rate'), 0)} "
            f"| {_f(raw['p50'])} / {_f(raw['p95'])} / {_f(raw['p99'])} "
            f"({raw['seen']}/{raw['sent']}) "
            f"| {_f(rollup['p50'])} / {_f(rollup['max'])} ({rollup['seen']}/{rollup['sent']}) "
            f"| {lag['max']} ({lag['last']}) | {_f(s.get('settle_s'), 0)} "
            f"| {_f(cores.get('indexer'))} ({_f(per.get('indexer'), 0)}) "
            f"| {_f(engine)} | {_f(s.get('machine_load1_mean'), 1)} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    import json
    import sys
    from pathlib import Path

    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
