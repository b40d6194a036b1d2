"""api.cache: rollup cells remembered by pack version answer exactly what a fresh read answers.

On the real engine: a report asked twice is served from memory the second time and is byte
for byte the answer of an app without the cache; after a late event (dirty hour), a new
rollup run (the pack rewritten) and a pack rewritten with W unchanged (a rebuild during a
reprocess hold), the cached app answers the new data at once. Every answer is also compared
with an app without any remembered answer at all: cells off and graphql-core's executor, so no
remembered point JSON either (api.encoded, decision 0250). With a stub engine: the key's edges
(an engine without sequence numbers, the bound, off).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch

from api import dsl, planner, sources
from api.app import create_app
from api.cache import ROLLUP_CELLS, RollupCells
from api.cells import Cell
from api.masking import CodedErrors
from api.model import HOUR_MS, Granularity, Metric
from api.schema import build_schema
from api.sources import Cells, Ctx
from pulse.naming import Names
from pulse.settings import Settings
from rollups.job import catch_up
from storage import fx
from storage import rollup_schema as rs
from tests.api.conftest import post
from tests.api.helpers import index_events, iso, to_events

MERCHANT = "mcache"
QUERY = """
query($m: ID!, $s: DateTime!, $e: DateTime!) {
  metrics(merchantId: $m, range: {start: $s, end: $e}, granularity: HOUR,
          metrics: [EVENTS, PAYMENTS, GROSS_SALES, AVERAGE_TICKET]) {
    series { points { start complete values { metric value errorBound currency } } }
    totals { metric value errorBound currency }
    meta { sources watermark }
  }
}
"""
DAY_MS = 24 * HOUR_MS


def _payment(n: int, at_ms: int, amount: float) -> dict[str, Any]:
    return {
        "event_id": f"e{n}", "merchant_id": MERCHANT, "event_type": "payment",
        "occurred_at": at_ms, "amount": amount, "currency": "EUR", "status": "succeeded",
    }  # fmt: skip


@pytest.fixture(scope="module")
def day(api_client: OpenSearch, api_settings: Settings, api_names: Names) -> int:
    """Two days ago (UTC midnight): 30 payments spread over its hours, rolled up."""
    start = (int(time.time() * 1000) // DAY_MS - 2) * DAY_MS
    events = to_events(_payment(n, start + (n % 24) * HOUR_MS + n, 10.0 + n) for n in range(30))
    index_events(api_client, api_settings, api_names, events, ingested_ms=1)
    catch_up(api_client, api_settings, api_names)
    return start


@pytest.fixture
def apps(api_settings: Settings, api_client: OpenSearch) -> Iterator[tuple[TestClient, ...]]:
    """The app as it runs (cache on), one without the cell cache, and one remembering nothing
    (no cell cache, graphql-core's executor), over the same engine."""
    ROLLUP_CELLS.clear()
    off = api_settings.model_copy(update={"api_rollup_cache_cells": 0})
    reference = build_schema([CodedErrors], plain_executor=False)
    yield (
        TestClient(create_app(api_settings, api_client)),
        TestClient(create_app(off, api_client)),
        TestClient(create_app(off, api_client, schema=reference)),
    )
    ROLLUP_CELLS.clear()


def _same_as_uncached(apps: tuple[TestClient, ...], key: str, day: int) -> dict[str, Any]:
    """The day's report, asked of every app: the same bytes."""
    return _alike(apps, key, QUERY, {"m": MERCHANT, "s": iso(day), "e": iso(day + DAY_MS)})


def _alike(
    apps: tuple[TestClient, ...], key: str, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    """The report as every app answers it: the same bytes, without errors."""
    headers = {"Authorization": f"Bearer {key}"}
    body = {"query": query, "variables": variables}
    texts = [http.post("/graphql", json=body, headers=headers).text for http in apps]
    assert texts[0] == texts[1] == texts[2]
    report = post(apps[0], key, query, variables)
    assert "errors" not in report, report
    metrics: dict[str, Any] = report["data"]["metrics"]
    return metrics


def _events_at(report: dict[str, Any], hour: int) -> float:
    value: float = report["series"][0]["points"][hour]["values"][0]["value"]
    return value


def test_a_repeated_report_is_served_from_memory_byte_for_byte(
    apps: tuple[TestClient, ...], admin_key: str, day: int
) -> None:
    report = _same_as_uncached(apps, admin_key, day)
    assert report["meta"]["sources"] == ["rollups"]
    assert report["totals"][0]["value"] == 30.0 and report["totals"][2]["currency"] == "EUR"
    hits = ROLLUP_CELLS.hits
    _same_as_uncached(apps, admin_key, day)
    assert ROLLUP_CELLS.hits > hits


def test_late_events_new_runs_and_rewritten_packs_are_answered_at_once(
    apps: tuple[TestClient, ...], admin_key: str, day: int,
    api_client: OpenSearch, api_settings: Settings, api_names: Names,
) -> None:  # fmt: skip
    before = _same_as_uncached(apps, admin_key, day)
    _same_as_uncached(apps, admin_key, day)  # remembered now
    # A late event in hour 5: the hour is dirty (raw) until the next run.
    late = to_events([_payment(100, day + 5 * HOUR_MS + 7, 99.0)])
    index_events(api_client, api_settings, api_names, late, ingested_ms=int(time.time() * 1000))
    dirty = _same_as_uncached(apps, admin_key, day)
    assert _events_at(dirty, 5) == _events_at(before, 5) + 1
    assert dirty["meta"]["sources"] == ["rollups", "raw"]
    # A new run rolls it up: the pack is rewritten, the hour comes from rollups again.
    catch_up(api_client, api_settings, api_names)
    _same_as_uncached(apps, admin_key, day)  # remembered from the new pack
    rolled = _same_as_uncached(apps, admin_key, day)
    assert rolled["meta"]["sources"] == ["rollups"]
    assert _events_at(rolled, 5) == _events_at(dirty, 5)
    # The pack rewritten while W stays (as a rebuild under a reprocess hold does): new version.
    index = rs.index_for(api_names, api_settings.generation, day)
    found = api_client.get(index=index, id=rs.pack_id(MERCHANT, day))
    pack = found["_source"]
    pack[rs.PACK][rs.EVENTS][7] += 40
    api_client.index(index=index, id=found["_id"], body=pack, refresh=True)
    rewritten = _same_as_uncached(apps, admin_key, day)
    assert _events_at(rewritten, 7) == _events_at(rolled, 7) + 40
    assert rewritten["meta"]["watermark"] == rolled["meta"]["watermark"]


def test_new_events_in_the_raw_tail_beside_a_remembered_answer(
    apps: tuple[TestClient, ...], admin_key: str, day: int,
    api_client: OpenSearch, api_settings: Settings, api_names: Names,
) -> None:  # fmt: skip
    """A range up to now: rolled-up days from a remembered answer (its points remembered as
    runs, decision 0315) and the open hours from raw. Events landing in the open hour change
    those points while the remembered answer stays: answered at once, byte for byte."""
    now = int(time.time() * 1000)
    end = (now // HOUR_MS + 1) * HOUR_MS
    variables = {"m": MERCHANT, "s": iso(day), "e": iso(end)}

    def same() -> dict[str, Any]:
        return _alike(apps, admin_key, QUERY, variables)

    fresh = [_payment(200 + n, now // HOUR_MS * HOUR_MS + n, 5.0) for n in range(2)]
    index_events(api_client, api_settings, api_names, to_events(fresh[:1]), ingested_ms=now)
    same()
    hits = ROLLUP_CELLS.hits
    before = same()  # the rolled-up days from memory now
    assert ROLLUP_CELLS.hits > hits
    assert before["meta"]["sources"] == ["rollups", "raw"]
    index_events(api_client, api_settings, api_names, to_events(fresh[1:]), ingested_ms=now)
    hits = ROLLUP_CELLS.hits
    after = same()
    assert ROLLUP_CELLS.hits > hits  # the same remembered answer, beside a new raw tail
    assert after["totals"][0]["value"] == before["totals"][0]["value"] + 1
    assert _events_at(after, -1) == _events_at(before, -1) + 1


CONVERTING = QUERY.replace(
    "metrics: [EVENTS, PAYMENTS, GROSS_SALES, AVERAGE_TICKET])",
    'metrics: [EVENTS, PAYMENTS, GROSS_SALES, AVERAGE_TICKET], reportingCurrency: "USD")',
)


def test_a_converted_remembered_answer_follows_new_rates(
    apps: tuple[TestClient, ...], admin_key: str, day: int,
    api_client: OpenSearch, api_names: Names,
) -> None:  # fmt: skip
    """A converting report's rolled-up points remembered as runs under the rates' version:
    loading other rates (a new version) answers them converted by the new rates at once."""
    assert CONVERTING != QUERY
    variables = {"m": MERCHANT, "s": iso(day), "e": iso(day + DAY_MS)}
    first = datetime.fromtimestamp(day / 1000, UTC).date()

    def load(per_usd: str) -> None:
        rates = [fx.Rate.of(first - timedelta(days=n), "EUR", Decimal(per_usd)) for n in range(3)]
        fx.load(api_client, api_names, rates)

    def same() -> dict[str, Any]:
        return _alike(apps, admin_key, CONVERTING, variables)

    load("0.5")
    same()
    hits = ROLLUP_CELLS.hits
    before = same()
    assert ROLLUP_CELLS.hits > hits  # remembered, converted
    load("0.25")  # a euro buys twice the dollars: every amount in USD doubles
    hits = ROLLUP_CELLS.hits
    after = same()
    assert ROLLUP_CELLS.hits > hits  # the same remembered answer, under other rates
    gross = [p["values"][2]["value"] for p in before["series"][0]["points"]]
    assert any(gross) and [p["values"][2]["value"] for p in after["series"][0]["points"]] == [
        g * 2 for g in gross
    ]


class Engine:
    """``mget`` of day packs, all at version ``seq`` (or without sequence numbers)."""

    def __init__(self, with_versions: bool = True) -> None:
        self.seq = 1
        self.with_versions = with_versions

    def mget(self, body: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        docs = []
        for d in body["docs"]:
            doc = {"_index": d["_index"], "_id": d["_id"], "found": True}
            if self.with_versions:
                doc.update({"_seq_no": self.seq, "_primary_term": 1})
            docs.append(doc)
        return {"docs": docs}


DAY0 = 1_704_067_200_000  # 2024-01-01T00:00Z
SETTINGS = Settings(opensearch_url="http://127.0.0.1:9", api_rollup_cache_cells=100)


def _read(cache: RollupCells, engine: Engine, settings: Settings = SETTINGS) -> list[Cells]:
    """One read through the cache; the full reads it made."""
    plan = planner.build_plan(
        "m1", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC), [Metric.EVENTS],
        granularity=Granularity.HOUR, now_ms=DAY0 + 10 * DAY_MS,
    )  # fmt: skip
    plan = planner.time_buckets(plan, settings)
    ctx = Ctx(engine, Names(namespace="t"), settings)  # type: ignore[arg-type]
    loads: list[Cells] = []

    def load(_ctx: Ctx, _plan: Any, _intervals: Any) -> Cells:
        loads.append({(None, None): Cell(events=engine.seq)})
        return loads[-1]

    index_of = partial(rs.index_for, ctx.names, settings.generation)
    cache.cells(ctx, plan, dsl.packs_request(plan, ((DAY0, DAY0 + 6 * HOUR_MS),), index_of), load)
    return loads


def test_an_engine_without_sequence_numbers_is_never_cached() -> None:
    cache, engine = RollupCells(), Engine(with_versions=False)
    assert len(_read(cache, engine)) == len(_read(cache, engine)) == 1
    assert cache.hits == 0


def test_the_bound_and_off() -> None:
    cache, engine = RollupCells(), Engine()
    _read(cache, engine, SETTINGS.model_copy(update={"api_rollup_cache_cells": 0}))
    _read(cache, engine, SETTINGS.model_copy(update={"api_rollup_cache_cells": 0}))
    assert cache.hits == cache.misses == 0
    _read(cache, engine)
    engine.seq += 1  # a new version: a second entry, the first one dropped past the bound
    _read(cache, engine, SETTINGS.model_copy(update={"api_rollup_cache_cells": 1}))
    engine.seq -= 1
    assert len(_read(cache, engine)) == 1


def test_a_remembered_pack_read_takes_no_pool_thread(
    apps: tuple[TestClient, ...], admin_key: str, day: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report of rollup hours and the open raw tail: the first time, the packs and the raw
    tail are read side by side (one in the request's thread, one on the query pool); once the
    packs are remembered,
    the raw tail alone is read, in the request's thread (no hop), and the answer is the same
    as an app's without the cache."""
    reads: list[object] = []
    submit = sources._POOL.submit

    def counted(fn: Any, *args: Any) -> Any:
        if fn is sources._read:  # not the late-event search, which runs there by design
            reads.append(args[-1])
        return submit(fn, *args)

    monkeypatch.setattr(sources._POOL, "submit", counted)
    end = (int(time.time() * 1000) // HOUR_MS + 1) * HOUR_MS
    variables = {"m": MERCHANT, "s": iso(day), "e": iso(end)}
    first = post(apps[0], admin_key, QUERY, variables)
    assert sorted(first["data"]["metrics"]["meta"]["sources"]) == ["raw", "rollups"]
    assert len(reads) == 1  # the packs and the raw tail side by side: one of them on the pool
    hits = ROLLUP_CELLS.hits
    again = post(apps[0], admin_key, QUERY, variables)
    assert ROLLUP_CELLS.hits == hits + 1 and len(reads) == 1  # no read went to the pool
    assert again == first == post(apps[1], admin_key, QUERY, variables)
