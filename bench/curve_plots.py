"""PNG plots of a ``pulse bench curves`` run (matplotlib, headless Agg backend, as
bench.plots): every point is a median (line) with its single runs (dots), so the noise of
the shared machine is visible next to the trend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on build machines; must precede pyplot's import
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import NullFormatter, ScalarFormatter


def plot_all(doc: dict[str, Any], out: Path, stem: str) -> list[Path]:
    """``<stem>-query.png``, ``<stem>-indexer.png``, ``<stem>-rollups.png`` for the stages
    the run has; returns their paths."""
    drawers = {"query": query, "indexer": indexer, "rollups": rollups}
    return [drawers[name](doc, out / f"{stem}-{name}.png") for name in drawers if name in doc]


def _line(
    ax: Axes, points: list[dict[str, Any]], x: str, key: str, label: str, **style: Any
) -> None:
    """The medians as a line, every run as a dot of the same colour."""
    xs = [p[x] for p in points]
    (line,) = ax.plot(xs, [p["median"][key] for p in points], marker="o", label=label, **style)
    for p in points:
        runs = [r[key] for r in p["runs"] if r.get(key) is not None]
        ax.scatter([p[x]] * len(runs), runs, s=10, color=line.get_color(), alpha=0.45)


def _load_note(doc: dict[str, Any], stage: str) -> str:
    before, after = doc[stage]["load_before"][0], doc[stage]["load_after"][0]
    return f"load avg {before} -> {after} on {doc['machine']['cpus']} cores"


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def query(doc: dict[str, Any], path: Path) -> Path:
    """p95 of each report on the rollup and raw paths against the raw data size."""
    points = doc["query"]["points"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, (report, title) in zip(
        axes, (("30d_hourly", "30 days, hourly"), ("90d_daily", "90 days, daily")), strict=True
    ):
        _line(ax, points, "raw_events", f"{report}_raw_p95_ms", "forced raw p95", color="tab:red")
        _line(ax, points, "raw_events", f"{report}_rollup_p95_ms", "rollup path p95")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())  # 100, not 10^2
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("raw events in the engine")
        ax.set_ylabel("p95 latency (ms, log)")
        ax.set_title(f"{title} report, biggest merchant")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"pulse bench curves: query p95 vs data size ({_load_note(doc, 'query')})")
    return _save(fig, path)


def indexer(doc: dict[str, Any], path: Path) -> Path:
    """CPU per event against the batch size, and throughput against raw ``_bulk``."""
    points = doc["indexer"]["points"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    _line(ax1, points, "batch_docs", "cpu_us_per_event", "indexer CPU-µs/event")
    _line(ax1, points, "batch_docs", "busy_cpu_us_per_event", "less idle polling", ls="--")
    ax1.set_ylabel("indexer process CPU per event (µs)")
    ax1.set_ylim(bottom=0)
    _line(ax2, points, "batch_docs", "events_per_s", "indexer")
    _line(ax2, points, "batch_docs", "baseline_events_per_s", "raw _bulk (baseline)", ls=":")
    ax2.set_ylabel("events/s")
    ax2.set_ylim(bottom=0)
    batches = [p["batch_docs"] for p in points]
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.set_xlabel("batch size (bulk_max_docs)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
    events = points[0]["events"]
    fig.suptitle(
        f"pulse bench curves: indexer, {events} events per run ({_load_note(doc, 'indexer')})"
    )
    return _save(fig, path)


def rollups(doc: dict[str, Any], path: Path) -> Path:
    """One full rollup run's seconds against the raw volume, and its cost per million."""
    points = doc["rollups"]["points"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    keys = [("wall_s", "wall"), ("job_cpu_s", "job CPU"), ("engine_cpu_s", "engine CPU")]
    keys = [(k, label) for k, label in keys if points[0]["median"].get(k) is not None]
    for key, label in keys:
        _line(ax1, points, "volume", key, label)
        _line(ax2, points, "volume", f"{key}_per_million_raw", label)
    base = points[0]
    linear = [base["median"]["wall_s"] * p["volume"] / base["volume"] for p in points]
    ax1.plot([p["volume"] for p in points], linear, color="grey", ls=":", label="wall, linear")
    ax1.set_ylabel("seconds per full run")
    ax2.set_ylabel("seconds per million raw events")
    for ax in (ax1, ax2):
        ax.set_xlabel("raw events in the day rolled up")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"pulse bench curves: rollup job cost vs volume ({_load_note(doc, 'rollups')})")
    return _save(fig, path)
