"""`pulse bench curves` at tiny sizes on the real engines: every stage runs, and the JSON and
the three PNGs have the documented structure. Behaviour, not speed: no timing is asserted."""

from __future__ import annotations

import json
import statistics
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import psutil
import pytest
from opensearchpy import OpenSearch

from bench import curves
from bench.curves import SCHEMA, CurvesConfig, _too_big, run, table
from pulse.settings import Settings

CONFIG = CurvesConfig(
    query_events=(300, 600, 1200),
    requests=3,
    index_batches=(50, 100, 200),
    index_events=300,
    rollup_events=(200, 400, 800),
    runs=1,  # the real engines cost ~5 s per indexer run: one run per point keeps this short
    merchants=20,
)


@pytest.fixture(scope="module")
def produced(
    opensearch_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], Path, str]:
    settings = Settings(
        opensearch_url=opensearch_url,
        kafka_bootstrap=kafka_bootstrap,
        raw_partitions=2,
        log_json=False,
    )
    out = tmp_path_factory.mktemp("curves")
    path = run(settings, CONFIG, out, "c", "pulse bench curves (test)")
    return json.loads(path.read_text()), out, path.name


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _medians_hold(point: dict[str, Any]) -> None:
    assert len(point["runs"]) == CONFIG.runs
    for key, value in point["median"].items():
        assert value == pytest.approx(statistics.median(r[key] for r in point["runs"]), abs=1e-3)
    for run_ in point["runs"]:
        assert run_["load1"] >= 0


def test_json_has_every_curve_with_medians_of_the_runs(
    produced: tuple[dict[str, Any], Path, str],
) -> None:
    doc, _, name = produced
    assert name == "c.json"
    assert doc["schema"] == SCHEMA and doc["command"] == "pulse bench curves (test)"
    assert doc["engines"] == "configured" and len(doc["load_start"]) == 3

    query = doc["query"]["points"]
    sizes = [p["raw_events"] for p in query]
    assert sizes == sorted(set(sizes)) and sizes[0] >= CONFIG.query_events[0]
    for point in query:
        _medians_hold(point)
        assert 0 < point["merchant_events"] < point["raw_events"]
        # Every event of a closed hour (a session may spill into the open hour, served raw).
        assert 0.99 * point["raw_events"] <= point["rolled_up_events"] <= point["raw_events"]
        for report in ("30d_hourly", "90d_daily"):
            for path in ("rollup", "raw"):
                assert point["median"][f"{report}_{path}_p95_ms"] > 0
        assert set(point["ratio_to_smallest"]) == {
            f"{r}_{p}_p95_ms" for r in ("30d_hourly", "90d_daily") for p in ("rollup", "raw")
        }
    assert all(v == 1.0 for v in query[0]["ratio_to_smallest"].values())

    indexer = doc["indexer"]["points"]
    assert [p["batch_docs"] for p in indexer] == list(CONFIG.index_batches)
    for point in indexer:
        _medians_hold(point)
        assert point["events"] == CONFIG.index_events
        assert point["median"]["cpu_us_per_event"] > 0
        assert point["median"]["baseline_events_per_s"] > 0

    rollups = doc["rollups"]["points"]
    assert [p["volume"] for p in rollups] == list(CONFIG.rollup_events)
    assert [p["median"]["raw_events"] for p in rollups] == list(CONFIG.rollup_events)
    hours = [p["median"]["merchant_hours"] for p in rollups]
    assert hours == sorted(hours) and hours[0] > 0
    for point in rollups:
        _medians_hold(point)
        assert "engine_cpu_s" not in point["median"]  # a configured engine: not measured
        assert point["median"]["job_cpu_s_per_million_raw"] > 0
    assert rollups[0]["ratio_to_smallest"]["job_cpu_s_per_million_raw"] == 1.0
    assert len(table(doc).splitlines()) == 1 + 3 * 3  # the load, then one line per point


def test_three_pngs_are_drawn(produced: tuple[dict[str, Any], Path, str]) -> None:
    _, out, _ = produced
    for curve in ("query", "indexer", "rollups"):
        assert _png_size(out / f"c-{curve}.png") == (1100, 450)


def test_a_size_the_engine_memory_cannot_hold_is_skipped_with_the_reason() -> None:
    assert _too_big(0.0, 600_000, 1) is None  # nothing measured yet: the first size runs
    assert _too_big(20_000.0, 100_000, 8 * 10**9) is None  # 2 GB of 8
    reason = _too_big(20_000.0, 600_000, 8 * 10**9)  # 12 GB of 8
    assert reason is not None and "12.0 GB needed" in reason and "8.0 GB available" in reason


def test_the_query_curve_keeps_each_point_and_stops_where_memory_ends(
    settings: Settings, os_client: OpenSearch,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # An engine that grows 100 MB each time it is looked at, on a machine with 100 MB free:
    # the first size is measured (no growth known yet), the next two are not loaded.
    rss = iter(range(10**9, 10**10, 10**8))
    engine = cast(
        psutil.Process, SimpleNamespace(memory_info=lambda: SimpleNamespace(rss=next(rss)))
    )
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=10**8))
    seen: list[tuple[int, int]] = []
    config = CurvesConfig(
        query_events=(300, 600, 1200), requests=2, runs=1, merchants=10,
        index_batches=(50, 100), rollup_events=(200, 400),
    )  # fmt: skip
    points, skipped = curves.query_curve(
        os_client, settings, config, engine, lambda p, s: seen.append((len(p), len(s)))
    )
    assert [p["raw_events"] for p in points] == [300] and points[0]["engine_rss_gb"] > 0
    assert [s["raw_events"] for s in skipped] == [600, 1200]
    # 600 events at the 100 MB grown over 300: 0.2 GB, more than 0.75 of the 0.1 GB free.
    assert skipped[0]["reason"] == (
        "engine memory: about 0.2 GB needed (333.3 KB per event measured), 0.1 GB available"
    )
    assert skipped[1]["reason"].startswith("engine memory: about 0.4 GB needed")
    assert seen == [(1, 0)]  # written after the measured point
