"""The first-purchase state's size and write cost per volume (docs/capacity.md, decision 0210).

One document per merchant-customer (storage.first_purchases), written by every scheduled
rollup run from the payments it ingested (rollups.customers.observe_ingested): a ``mget`` of
every (merchant, customer) paying among them, and a compare-and-set write only where a first
purchase is new or moved earlier. Runs follow arrivals (every ``rollup_interval_s``), so the
lunch peak's rate is the load, not a burst at the hour's close. ``bench.capacity`` renders
``customers_table`` into its generated block.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from bench.capacity import Input, Row, figures_table
from ingest.loadgen import WEEK_MS, Generator, LoadSpec, Returning
from pulse.clock import parse_instant
from storage import first_purchases as fp

HOUR_S = 3600


def measured_paid_share(samples: int = 20_000) -> float:
    """Succeeded payments carrying a customer, per event, in loadgen's mix."""
    gen = Generator(LoadSpec(merchants=1000, seed=3))
    events = [gen.event_at(1_790_000_000_000) for _ in range(samples)]
    paid = sum(1 for e in events if e.get("status") == "succeeded" and e.get("customer_id"))
    return paid / samples


def measured_new_share(weeks: int = 16, events: int = 60_000) -> float:
    """First purchases per succeeded payment in loadgen's returning-customer model, over its
    last four weeks (the shop has history by then): the share of paying customer-events that
    create a document."""
    gen = Generator(LoadSpec(merchants=200, seed=5, returning=Returning()))
    start = 2_800 * WEEK_MS
    seen: set[tuple[str, str]] = set()
    late_paid = late_new = 0
    stream = sorted(
        (parse_instant(e["occurred_at"]), e)
        for e in gen.events(events, start, start + weeks * WEEK_MS)
        if e.get("status") == "succeeded"
    )
    for at, e in stream:
        key = (e["merchant_id"], e["customer_id"])
        if at >= start + (weeks - 4) * WEEK_MS:
            late_paid += 1
            late_new += key not in seen
        seen.add(key)
    return late_new / late_paid


def measured_doc_bytes() -> float:
    """JSON bytes of one first-purchase document's source, as the writer builds it."""
    doc: dict[str, Any] = fp.doc("m00042", -8_833_844_021_317_457_471, 1_790_000_000_000, 0)
    return float(len(json.dumps(doc, separators=(",", ":"))))


def customer_inputs() -> dict[str, Input]:
    source = measured_doc_bytes()
    return {
        "paid_share": Input(
            round(measured_paid_share(), 3),
            "succeeded payments with a customer per event",
            "measured: loadgen mix (bench.customers_capacity)",
        ),
        "new_share": Input(
            0.25,
            "first purchases per succeeded payment",
            "ASSUMPTION: established shops take 70-80% of orders from returning customers; "
            f"loadgen's `Returning` model (200 Zipf merchants, weeks 13-16) gives "
            f"{measured_new_share():.2f}, its long tail of tiny merchants having little "
            "history; re-measure on production arrivals",
            provisional=True,
        ),
        "customer_doc_bytes": Input(
            round(source * 1.1 + 60),
            "B per first-purchase doc on disk (primary)",
            f"measured source {source:.0f} B x 1.1 + ASSUMPTION 60 B of _id, doc values and "
            "postings per document",
            provisional=True,
        ),
        "customer_years": Input(
            2, "years of first purchases kept", "as long as the rollups (rollup_retention_days)"
        ),
        "gets_per_paid": Input(
            1.0,
            "gets per succeeded payment in a run",
            "upper bound: one per (merchant, customer) among a run's ingested payments; a "
            "customer paying twice between two runs is read once",
        ),
    }


def customer_plan(events_per_day: float, inp: dict[str, Input]) -> dict[str, float]:
    """The state's figures at one volume (base inputs ``lunch_share``, ``replicas``,
    ``storage_overhead``, ``shard_target_gb`` from bench.capacity)."""
    v: Callable[[str], float] = lambda name: inp[name].value  # noqa: E731
    paid_day = events_per_day * v("paid_share")
    new_day = paid_day * v("new_share")
    docs = new_day * 365 * v("customer_years")
    primary_gb = docs * v("customer_doc_bytes") / 1e9
    peak_paid_s = paid_day * v("lunch_share") / HOUR_S
    return {
        "new_day": new_day,
        "docs": docs,
        "primary_gb": primary_gb,
        "total_gb": primary_gb * (1 + v("replicas")) * v("storage_overhead"),
        "shards": float(max(1, math.ceil(primary_gb / v("shard_target_gb")))),
        "peak_paid_s": peak_paid_s,
        "peak_writes_s": peak_paid_s * v("new_share"),
        "peak_gets_s": peak_paid_s * v("gets_per_paid"),
    }


ROWS: tuple[Row, ...] = (
    ("new_day", "new merchant-customers per day", 0, "paid_share x new_share"),
    ("docs", "**documents** (merchant-customers kept)", 0, "customer_years"),
    ("primary_gb", "primary GB", 1, "customer_doc_bytes"),
    ("total_gb", "GB with replica and overhead", 1, "replicas, storage_overhead"),
    ("shards", "primary shards (`first_purchase_shards`)", 0, "shard_target_gb"),
    ("peak_paid_s", "succeeded payments/s in the lunch peak", 0, "lunch_share"),
    ("peak_writes_s", "**writes/s** in the lunch peak (new first purchases)", 0, "new_share"),
    ("peak_gets_s", "gets/s (mget) in the lunch peak", 0, "gets_per_paid"),
)


def customers_table(inp: dict[str, Input], volumes: tuple[float, ...]) -> list[str]:
    return figures_table([customer_plan(volume, inp) for volume in volumes], volumes, ROWS)
