"""Reprocessing checked as merchants see it: GraphQL reports through the API app, compared
with the API tests' Python oracle (tests.api.test_reports) computed from the same events."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import date
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from ingest.contract import Event, parse_message, to_kafka_message
from pulse.keystore import create_key
from reprocess.generations import DAY_MS, day_start_ms
from reprocess.service import Context
from tests.api.conftest import post
from tests.api.helpers import METRICS, dedupe, iso
from tests.api.test_reports import check, oracle

QUERY = """
query($m: ID!, $s: DateTime!, $e: DateTime!, $metrics: [Metric!]!, $g: Granularity,
      $tz: String, $f: ForceSource) {
  metrics(merchantId: $m, range: {start: $s, end: $e}, metrics: $metrics, granularity: $g,
          timezone: $tz, forceSource: $f) {
    series { group { dimension value }
             points { start complete values { metric value errorBound } } }
    totals { metric value errorBound }
    meta { sources }
  }
}
"""
# What a merchant asks about the reprocessed days: daily in UTC (whole hours: rollups) and
# in Asia/Kolkata (+05:30: each day's boundary half hours are stitched from raw), and hourly.
SHAPES = (("DAY", "UTC"), ("DAY", "Asia/Kolkata"), ("HOUR", "UTC"))
Answer = dict[str, Any]


def as_events(raws: Iterable[dict[str, Any]]) -> list[Event]:
    """The events as the engine holds them: through the Kafka message format, deduplicated."""
    out = []
    for raw in raws:
        event = parse_message(to_kafka_message(raw))
        assert isinstance(event, Event)
        out.append(event)
    return dedupe(out)


def misread(events: Iterable[Event]) -> list[Event]:
    """The events as the buggy processing (tests.reprocess.conftest) indexed them."""
    return [
        dataclasses.replace(e, amount_milli=e.amount_milli // 1000)
        if e.amount_milli is not None
        else e
        for e in events
    ]


@dataclasses.dataclass
class Api:
    """The GraphQL API app over the test's namespace, with a key per merchant and an admin."""

    http: TestClient
    keys: dict[str, str]
    admin: str

    @classmethod
    def over(cls, ctx: Context, merchants: Iterable[str]) -> Api:
        settings = ctx.settings.model_copy(update={"rate_limit_per_minute": 1_000_000})
        http = TestClient(create_app(settings, ctx.client))
        keys = {m: create_key(ctx.client, ctx.names, m, admin=False)[0] for m in merchants}
        return cls(http, keys, create_key(ctx.client, ctx.names, None, admin=True)[0])

    def report(self, q: dict[str, Any], raw: bool = False) -> Answer:
        """One report: AUTO with the merchant's key, or forceSource RAW with the admin key."""
        variables = {
            "m": q["m"], "s": iso(q["start_ms"]), "e": iso(q["end_ms"]), "metrics": q["metrics"],
            "g": q["g"], "tz": q["tz"], "f": "RAW" if raw else "AUTO",
        }  # fmt: skip
        body = post(self.http, self.admin if raw else self.keys[q["m"]], QUERY, variables)
        assert "errors" not in body, body
        answer: Answer = body["data"]["metrics"]
        return answer

    def answers(self, queries: list[dict[str, Any]]) -> list[tuple[Answer, Answer]]:
        """(AUTO, RAW) answer of every query, in order."""
        return [(self.report(q), self.report(q, raw=True)) for q in queries]


def queries(merchants: Iterable[str], days: list[date]) -> list[dict[str, Any]]:
    start, end = day_start_ms(days[0]), day_start_ms(days[-1]) + DAY_MS
    base = {"start_ms": start, "end_ms": end, "metrics": list(METRICS), "groupBy": [],
            "filters": [], "limit": 10}  # fmt: skip
    return [{**base, "m": m, "g": g, "tz": tz} for m in merchants for g, tz in SHAPES]


def check_all(
    answers: list[tuple[Answer, Answer]], qs: list[dict[str, Any]], events: list[Event]
) -> None:
    """Every answer, both paths, equals the oracle of ``events`` (the API tests' checker:
    every bucket present, exact sums, unique customers within the reported error bound)."""
    for (auto, raw), q in zip(answers, qs, strict=True):
        cells = oracle(events, q)
        check(auto, cells, q)
        check(raw, cells, q)


def values(answer: Answer) -> Any:
    """An answer's numbers: without ``meta`` and ``errorBound`` (which source served it may
    change, and with it the bound of an estimate — checked against the oracle by
    ``check_all``; the values may not change)."""
    return _strip({k: v for k, v in answer.items() if k != "meta"})


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "errorBound"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def sources(answers: list[tuple[Answer, Answer]]) -> set[str]:
    """Sources the AUTO answers were served from."""
    return {s for auto, _ in answers for s in auto["meta"]["sources"]}
