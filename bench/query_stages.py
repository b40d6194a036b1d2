"""API-side CPU of whole reports through the report stages, against a stub engine.

``python -m bench.query_stages [--runs N]`` runs ``api.service.report`` (resolution,
formatting, execution, ranking, shaping; docs/decisions/0230) for a 30-day hourly report of
five metrics and a 30-day daily report grouped by CHANNEL, with an engine stand-in that
answers every request at once: the rollup state (W 30 minutes before now, so the range is
mostly rollup hours and the late-event search runs), no arrival bounds, one alias member,
empty searches and no day packs. What is timed is the Python work around the engine calls.
Prints one JSON document: median and p10 ms per report over N timed reports (after 30
warm-up reports). Run it on two checkouts (``PYTHONPATH``) to compare their code.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from api import planner, service
from api.keys import Principal
from api.model import Dimension, Granularity, Metric, QueryPlan
from api.sources import Ctx
from pulse.naming import names_for
from pulse.settings import Settings
from storage.rollup_schema import SCHEMA_VERSION

START = datetime(2024, 5, 2, tzinfo=UTC)
END = datetime(2024, 6, 1, tzinfo=UTC)
NOW = int(END.timestamp() * 1000) - 90 * 60_000
WATERMARK = NOW - 30 * 60_000
FIVE = [
    Metric.EVENTS,
    Metric.PAYMENTS,
    Metric.GROSS_SALES,
    Metric.NET_SALES,
    Metric.PAYMENT_SUCCESS_RATE,
]


class StubEngine:
    """Answers the calls of a report at once (the opensearch-py methods it uses)."""

    def __init__(self, generation: str) -> None:
        self.generation = generation
        self.indices = self
        self.cat = self

    def mget(self, body: dict[str, Any], **_kw: Any) -> dict[str, Any]:
        state = {"generation": self.generation, "schema": SCHEMA_VERSION, "watermark": WATERMARK}
        docs = []
        for entry in body["docs"]:  # the rollup state, else not found (holds, bounds, packs)
            doc_id = {"_index": entry["_index"], "_id": entry["_id"]}
            if entry["_id"] == "rollups.state":
                docs.append(
                    {**doc_id, "found": True, "_source": {"rollups": state},
                     "_seq_no": 1, "_primary_term": 1}
                )  # fmt: skip
            else:
                docs.append({**doc_id, "found": False})
        return {"docs": docs}

    def get_alias(self, name: str) -> dict[str, Any]:
        return {f"{name}-all": {}}  # one member without a day: every range goes to it

    def aliases(self, name: str, **_kw: Any) -> str:  # _cat/aliases text (storage.served)
        return f"{name}-all\n"

    def search(self, **_kw: Any) -> dict[str, Any]:
        return {"hits": {"total": {"value": 0}, "hits": []}, "aggregations": {}}


def cases() -> dict[str, QueryPlan]:
    daily = planner.build_plan(
        "m1", START, END, FIVE, now_ms=NOW, granularity=Granularity.DAY,
        group_by=[Dimension.CHANNEL],
    )  # fmt: skip
    return {"30d_hourly": planner.build_plan("m1", START, END, FIVE, now_ms=NOW),
            "30d_daily_by_channel": daily}  # fmt: skip


def measure(runs: int) -> dict[str, dict[str, float]]:
    settings = Settings(opensearch_url="http://127.0.0.1:9")
    ctx = Ctx(StubEngine(settings.generation), names_for(settings), settings)  # type: ignore[arg-type]
    admin = Principal("bench", None, admin=True)
    out = {}
    for name, plan in cases().items():
        processed = service.process(ctx, plan, admin)
        for _ in range(30):
            service.report(ctx, processed)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            service.report(ctx, processed)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        p10 = times[len(times) // 10]
        out[name] = {"median_ms": round(statistics.median(times), 3), "p10_ms": round(p10, 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    print(json.dumps(measure(args.runs), indent=2))


if __name__ == "__main__":
    main()
