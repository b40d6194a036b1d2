"""bench.collector: same-run ratios and medians, and the in-process cost of a cached check."""

from __future__ import annotations

import argparse

from bench.collector import MODES, check_cost_us, summary


def row(mode: str, per_core: float) -> dict[str, object]:
    return {"mode": mode, "requests_per_core_s": per_core, "requests_per_s": per_core / 10}


def test_ratios_are_taken_within_each_run() -> None:
    runs = [
        [row("noauth", 1000.0), row("auth", 900.0), row("auth-cold", 500.0)],
        [row("noauth", 500.0), row("auth", 500.0), row("auth-cold", 300.0)],  # a busy run
        [row("noauth", 800.0), row("auth", 760.0), row("auth-cold", 400.0)],
    ]
    args = argparse.Namespace(batch=1, requests=10, threads=2)
    doc = summary(runs, args, [1.0], [2.0])
    assert doc["ratio_to_noauth_per_run"][1] == {"noauth": 1.0, "auth": 1.0, "auth-cold": 0.6}
    assert doc["median_ratio_to_noauth"] == {"noauth": 1.0, "auth": 0.95, "auth-cold": 0.5}
    assert doc["medians"]["auth"]["requests_per_core_s"] == 760.0
    assert set(doc["medians"]) == set(MODES)


def test_the_cached_check_is_timed() -> None:
    cost = check_cost_us(calls=2000)
    assert cost["calls"] == 2000 and 0 < cost["median_us"] < 10_000
