"""bench.query_stages runs whole reports through the stages against its stub engine."""

from __future__ import annotations

from bench import query_stages


def test_both_reports_run_and_are_timed() -> None:
    figures = query_stages.measure(runs=5)
    assert set(figures) == {"30d_hourly", "30d_daily_by_channel"}
    assert all(0 < f["p10_ms"] <= f["median_ms"] for f in figures.values())
