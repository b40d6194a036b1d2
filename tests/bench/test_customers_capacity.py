"""The first-purchase state's capacity arithmetic (docs/capacity.md, decision 0210)."""

from __future__ import annotations

import pytest

from bench.capacity import Input
from bench.customers_capacity import customer_inputs, customer_plan, customers_table


def test_first_purchase_state_at_one_billion_a_day() -> None:
    base = {
        "lunch_share": Input(0.5, "", ""),
        "replicas": Input(1, "", ""),
        "storage_overhead": Input(1.3, "", ""),
        "shard_target_gb": Input(40.0, "", ""),
    }
    inputs = {**base, **customer_inputs()}
    p = customer_plan(1e9, inputs)
    paid = inputs["paid_share"].value
    assert 0.15 < paid < 0.3  # loadgen: 25% payments, 88% of them succeeded
    assert p["new_day"] == pytest.approx(1e9 * paid * 0.25)
    assert p["docs"] == pytest.approx(p["new_day"] * 730)
    assert p["total_gb"] == pytest.approx(p["primary_gb"] * 2 * 1.3)
    assert p["peak_paid_s"] == pytest.approx(1e9 * paid * 0.5 / 3600)
    assert p["peak_writes_s"] == pytest.approx(p["peak_paid_s"] * 0.25)
    assert p["shards"] >= p["primary_gb"] / 40
    assert len(customers_table(inputs, (1e9, 5e9))) == 2 + 8
