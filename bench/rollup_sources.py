"""``python -m bench.rollup_sources``: what schema 4's additions cost the rollup recompute.

Schema 4 (decisions 0200, 0205) gave the recompute composite two more sources (``currency``,
``decline_code``, both with missing buckets) and one more sub-aggregation (``dispute``). A
session-6 comparison of two code versions on differently generated data found the rollup
step 1.5-1.8x slower. This bench asks the question on the same data, in the same run: one
closed hour of loadgen events is written once; then the recompute of all its pairs runs
alternately with the schema-4 composite (what ``rollups.compute`` sends) and with the
schema-3 one (those sources and that sub-aggregation left out), ``--repeat`` times each,
order A B A B ... The fold into buckets is the same code for both (``rollups.compute._add``
with the left-out keys filled in as missing), so the difference is the query's and its
answer's. Reported: medians of the job's CPU (``getrusage``), the engine's CPU (psutil) and
wall time, per million events, and the composite buckets each returned. Prints one JSON
document.
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

from bench.rollups import RawWriter, _cpu_s, _self_cpu_s
from ingest.contract import validate
from ingest.loadgen import Generator, LoadSpec, days_ago_ms
from pulse.clients import opensearch_client
from pulse.clock import DAY_MS
from pulse.engines import start_opensearch
from pulse.naming import names_for
from pulse.settings import get_settings
from rollups import compute, sketch
from rollups.compute import Bucket, BucketKey, Pair
from storage import rollup_schema as rs
from storage import served
from storage.rollup_schema import HOUR_MS

SCHEMA_4_ONLY = (rs.CURRENCY, "decline_code")
VARIANTS = ("4", "3", "split")


def composite(schema: int, page: int, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """The recompute composite of ``rollups.compute`` (4), or without schema 4's parts (3),
    or without the sources in ``without``."""
    dropped = SCHEMA_4_ONLY if schema == 3 else without
    dims = [d for d in rs.DIMENSIONS if d not in dropped]
    sub_aggs = {k: v for k, v in compute.SUB_AGGS.items() if schema == 4 or k != "dispute"}
    sources: list[dict[str, Any]] = [
        {"m": {"terms": {"field": "merchant_id"}}},
        {"h": compute.HOUR_SOURCE},
        *({d: {"terms": {"field": d, "missing_bucket": True}}} for d in dims),
        {"c": {"terms": {"field": "customer_hash", "missing_bucket": True}}},
    ]
    return {"composite": {"size": page, "sources": sources}, "aggs": sub_aggs}


def recompute(
    client: OpenSearch, alias: str, pairs: list[Pair], variant: str, page: int
) -> tuple[dict[BucketKey, Bucket], int]:
    """All buckets of the pairs (one day: the bench's hour) and the composite buckets read.
    ``variant``: "4" (the product's query), "3" (schema 3's), "split" (events without a
    decline code by a composite without that source, the others by the full one)."""
    day = pairs[0][1] - pairs[0][1] % DAY_MS
    index = ",".join(served.covering(served.members(client, alias), day, day + DAY_MS))
    query = compute.pairs_query(pairs)
    has_code = {"exists": {"field": "decline_code"}}
    if variant == "split":
        asks = [
            (
                {"bool": {"filter": [query], "must_not": [has_code]}},
                composite(4, page, ("decline_code",)),
            ),
            ({"bool": {"filter": [query, has_code]}}, composite(4, page)),
        ]
    else:
        asks = [(query, composite(int(variant), page))]
    out: dict[BucketKey, Bucket] = {}
    read = 0
    for q, comp in asks:
        for buckets in compute.composite_pages(client, index, q, comp):
            for b in buckets:
                for d in SCHEMA_4_ONLY:
                    b["key"].setdefault(d, None)
                b.setdefault("dispute", {"doc_count": 0})
                compute._add(out, b)
                read += 1
    return compute.with_totals(out), read


def comparable(buckets: dict[BucketKey, Bucket]) -> dict[BucketKey, Any]:
    """Bucket documents with the sketch as its estimate (the encoding follows the order of
    insertion, the set of customers does not)."""
    out = {}
    for key, bucket in buckets.items():
        doc = bucket.to_doc(key, "g", 0)
        doc[rs.CUSTOMERS_SKETCH] = sketch.bounds(bucket.customers)
        out[key] = doc
    return out


def measure(
    client: OpenSearch, engine: psutil.Process, alias: str, pairs: list[Pair], variant: str
) -> dict[str, float]:
    cpu0, eng0, t0 = _self_cpu_s(), _cpu_s(engine), time.perf_counter()
    buckets, read = recompute(client, alias, pairs, variant, 10_000)
    return {
        "wall_s": time.perf_counter() - t0,
        "job_cpu_s": _self_cpu_s() - cpu0,
        "engine_cpu_s": _cpu_s(engine) - eng0,
        "rollup_buckets": len(buckets),
        "composite_buckets": read,
    }


def run(events: int, merchants: int, repeat: int) -> dict[str, Any]:
    engine = start_opensearch()
    proc = psutil.Process(engine.pid)
    try:
        client = opensearch_client(engine.address, timeout_s=300)
        base = get_settings()
        settings = base.model_copy(
            update={"opensearch_url": engine.address, "namespace": f"ab{uuid.uuid4().hex[:6]}"}
        )
        names = names_for(settings)
        hour = days_ago_ms(2) + 12 * HOUR_MS
        gen = Generator(LoadSpec(merchants=merchants, seed=23))
        stream = (validate(e) for e in gen.events(events, hour, hour + HOUR_MS))
        written = RawWriter(client, settings, names).write(stream, lambda _: hour)
        pairs = compute.pairs_between(client, names.events_alias, hour, hour + HOUR_MS, 10_000)
        print(f"indexed {written} events, {len(pairs)} merchant-hours", file=sys.stderr)
        # Warm-up (the engine's caches), and the split must give the product's buckets.
        full, _ = recompute(client, names.events_alias, pairs, "4", 10_000)
        split, _ = recompute(client, names.events_alias, pairs, "split", 10_000)
        if comparable(full) != comparable(split):
            raise AssertionError("the split query's buckets differ from the product's")
        rounds: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
        for r in range(repeat):
            for variant in VARIANTS:  # interleaved: every variant sees the same load
                rounds[variant].append(measure(client, proc, names.events_alias, pairs, variant))
                print(f"round {r + 1} {variant}: {rounds[variant][-1]}", file=sys.stderr)
        per_m = 1_000_000 / written
        out: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "load1_end": round(os.getloadavg()[0], 2)},
            "events": written,
            "pairs": len(pairs),
            "repeat": repeat,
        }
        for variant, found in rounds.items():
            out[variant] = {
                "job_cpu_s_per_m": round(
                    statistics.median(f["job_cpu_s"] for f in found) * per_m, 1
                ),
                "engine_cpu_s_per_m": round(
                    statistics.median(f["engine_cpu_s"] for f in found) * per_m, 1
                ),
                "wall_s": round(statistics.median(f["wall_s"] for f in found), 2),
                "rollup_buckets": found[0]["rollup_buckets"],
                "composite_buckets": found[0]["composite_buckets"],
            }
        for key in ("job_cpu_s_per_m", "engine_cpu_s_per_m", "wall_s"):
            for variant in ("4", "split"):
                out[f"ratio_{key}_{variant}_to_3"] = round(out[variant][key] / out["3"][key], 3)
        return out
    finally:
        engine.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--merchants", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.events, args.merchants, args.repeat), indent=2))


if __name__ == "__main__":
    main()
