"""PNG plots of an e2e run (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on build machines; must precede pyplot's import
import matplotlib.pyplot as plt
from matplotlib.axes import Axes


def plot_all(doc: dict[str, Any], out: Path, stem: str) -> list[Path]:
    """Write ``<stem>-timeline.png`` and ``<stem>-freshness.png``; returns their paths."""
    return [
        timeline(doc, out / f"{stem}-timeline.png"),
        freshness(doc, out / f"{stem}-freshness.png"),
    ]


def _step_bands(ax: Axes, doc: dict[str, Any]) -> None:
    """Shade each step and label it with its path and target rate."""
    for index, step in enumerate(doc["steps"]):
        start = step["started_s"]
        ax.axvspan(start, start + step["duration_s"], alpha=0.06 + 0.08 * (index % 2))
        label = f"{step['path']} {step['target_rate']:.0f}/s"
        ax.annotate(label, (start, 1.0), xycoords=("data", "axes fraction"), fontsize=7, va="top")
    if doc["timeseries"]:
        ax.set_xlim(0, doc["timeseries"][-1]["t"])


def timeline(doc: dict[str, Any], path: Path) -> Path:
    """Probe freshness, consumer lag and CPU per component over the run."""
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    for name, color in (("raw", "tab:green"), ("rollup", "tab:orange")):
        pts = [(s, lat) for s, lat, _ in doc["probes"][name] if lat is not None]
        ax1.scatter([p[0] for p in pts], [p[1] for p in pts], s=6, color=color, label=name)
    ax1.set_ylabel("probe freshness (s)")
    ax1.legend(loc="upper right", fontsize=8)
    rows = doc["timeseries"]
    lag = [(r["t"], r["lag"]) for r in rows if r.get("lag") is not None]
    ax2.plot([x for x, _ in lag], [y for _, y in lag], color="tab:red")
    ax2.set_ylabel("indexer consumer lag (msgs)")
    names = sorted({n for r in rows for n in r["cpu"]})
    ts = [r["t"] for r in rows]
    ax3.stackplot(ts, [[r["cpu"].get(n, 0.0) for r in rows] for n in names], labels=names)
    ax3.set_ylabel("CPU (cores)")
    ax3.set_xlabel("seconds since start")
    ax3.legend(loc="upper right", fontsize=7, ncol=4)
    for ax in (ax1, ax2, ax3):
        _step_bands(ax, doc)
    fig.suptitle("pulse bench e2e: freshness, lag and CPU per component")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def freshness(doc: dict[str, Any], path: Path) -> Path:
    """p50/p95/p99 freshness to the raw answer per step, with the 5 s target."""
    steps = doc["steps"]
    labels = [
        f"{s['path']}\n{s['target_rate']:.0f}/s\n(got {s['achieved_rate']:.0f})" for s in steps
    ]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(steps)), 4.5))
    width = 0.25
    for offset, q in enumerate(("p50", "p95", "p99")):
        values = [s["freshness_raw_s"][q] or 0.0 for s in steps]
        xs = [i + (offset - 1) * width for i in range(len(steps))]
        ax.bar(xs, values, width, label=q)
    ax.axhline(5.0, color="red", linestyle="--", linewidth=1, label="target p95 5 s")
    ax.set_xticks(range(len(steps)), labels, fontsize=8)
    ax.set_ylabel("seconds from send to GraphQL answer")
    ax.set_title("Freshness to the raw answer per step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
