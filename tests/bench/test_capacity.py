"""The capacity model's arithmetic (docs/capacity.md is generated from it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.capacity import (
    BEGIN,
    END,
    Input,
    backlog,
    default_inputs,
    peak_rate,
    plan,
    rebuild,
    render,
    write,
)


@pytest.fixture(scope="module")
def inputs() -> dict[str, Input]:
    return default_inputs(Path("does-not-exist.json"))


def test_peak_is_139k_per_billion() -> None:
    assert round(peak_rate(1e9, 0.5)) == 138_889


def test_a_2x_lunch_waits_12_minutes_at_60_percent(inputs: dict[str, Input]) -> None:
    result = backlog(2.0, inputs)
    assert result["worst_delay_s"] == pytest.approx(720.0)
    assert backlog(1.5, inputs)["worst_delay_s"] == 0.0  # 0.9 of capacity: no backlog
    assert backlog(2 / 0.6, inputs)["worst_delay_s"] == pytest.approx(3600.0)


def test_plan_scales_and_keeps_shards_in_range(inputs: dict[str, Input]) -> None:
    small, large = plan(1e9, inputs), plan(10e9, inputs)
    assert large["indexer_pods"] >= 9 * small["indexer_pods"]
    assert large["partitions"] >= large["indexer_pods"]
    for p in (small, large):
        assert 10 <= p["raw_day_gb"] / p["raw_shards_day"] <= 50
        assert p["data_nodes"] >= max(3, p["nodes_by_cpu"], p["nodes_by_disk"])


def test_write_replaces_only_the_generated_block(inputs: dict[str, Input], tmp_path: Path) -> None:
    doc = tmp_path / "capacity.md"
    doc.write_text(f"intro\n{BEGIN}\nold\n{END}\noutro\n")
    write(doc, render(inputs))
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{END}\noutro\n")
    assert "old" not in text and "### Plan per volume" in text


def test_rebuilding_a_day_costs_the_same_found_1_or_7_days_later(
    inputs: dict[str, Input],
) -> None:
    soon, late = rebuild(1e9, 1, inputs), rebuild(1e9, 7, inputs)
    assert soon["read_now"] == late["read_now"] < 1.3e9  # the day + 2 h + late share
    assert (soon["read_before"], late["read_before"]) == (2e9, 8e9)  # to the head
    assert 0 < inputs["replay_skip_ratio"].value < 1  # skipping is cheaper than decoding
    assert late["k1_h"] > late["k8_h"] >= late["engine_h"]  # workers divide the CPU
    assert late["k1_h"] < late["before_h"]
