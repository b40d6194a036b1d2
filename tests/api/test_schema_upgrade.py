"""Upgrading rollups from schema 3 (no disputes, no decline_code) to 4: never a wrong answer.

The documents of a schema-3 job are rebuilt here from the current ones exactly as that job
would have written them (detail documents keyed by seven dimensions, so several decline codes
share one; no ``disputes`` anywhere, packs without its array), with a state of schema 3. The
API must answer the new metrics from raw events meanwhile, and the next rollup run must rebuild
everything (the old detail documents are not left behind to be counted twice).
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch, helpers

from ingest.contract import Event
from ingest.loadgen import HOUR_MS, Generator, LoadSpec
from pulse.naming import Names
from pulse.settings import Settings
from rollups import state
from rollups.job import catch_up
from storage import rollup_schema as rs
from tests.api.conftest import post
from tests.api.helpers import Acc, dedupe, index_events, iso, to_events
from tests.rollups.helpers import as_single_lease_job

START = 1_730_419_200_000  # 2024-11-01T00:00:00Z
END = START + 6 * HOUR_MS
MERCHANT = "m00000"
V3_DIMENSIONS = rs.DIMENSIONS[:7]  # schema 3: without decline_code
QUERY = """
query($m: ID!, $s: DateTime!, $e: DateTime!, $metrics: [Metric!]!, $groupBy: [Dimension!]) {
  metrics(merchantId: $m, range: {start: $s, end: $e}, metrics: $metrics, granularity: HOUR,
          groupBy: $groupBy, limit: 20) {
    series { group { value } points { values { value } } }
    totals { value }
    meta { sources }
  }
}
"""
METRICS = ["DISPUTES", "DISPUTE_RATE", "FAILED_PAYMENTS", "REFUND_RATE", "EVENTS"]


def _events() -> list[Event]:
    rng = random.Random(16)
    gen = Generator(LoadSpec(merchants=1, seed=16))
    raws = [gen.event_at(rng.randrange(START, END)) for _ in range(600)]
    for raw in raws[::25]:
        raw["event_type"] = "dispute"
    for raw in raws:  # failed payments alike but for their code: schema 3 merged them
        if raw.get("status") == "failed":
            raw.update(device="ios", channel="web", country="DE", payment_method="card")
            raw.update(store_id="st0")
    return dedupe(to_events(raws))


def _as_schema_3(client: OpenSearch, names: Names) -> int:
    """Replace every rollup document by what a schema-3 job wrote; how many details merged."""
    client.indices.refresh(index=names.rollups_alias)
    hits = client.search(index=names.rollups_alias, body={"size": 10_000})["hits"]["hits"]
    v3: dict[tuple[str, str], dict[str, Any]] = {}
    for hit in hits:
        doc = {k: v for k, v in hit["_source"].items() if k not in (rs.DISPUTES, "decline_code")}
        if doc[rs.LEVEL] == rs.LEVEL_DAY:
            doc[rs.PACK] = {k: v for k, v in doc[rs.PACK].items() if k != rs.DISPUTES}
            v3[(hit["_index"], hit["_id"])] = doc
            continue
        if doc[rs.LEVEL] == rs.LEVEL_TOTAL:
            v3[(hit["_index"], hit["_id"])] = doc
            continue
        values = tuple(doc[d] for d in V3_DIMENSIONS)
        key = (hit["_index"], rs.doc_id(doc[rs.MERCHANT], int(doc[rs.HOUR]), values))
        if key in v3:  # another decline code of the same combination: one document in v3
            for field in (rs.EVENTS, rs.PAYMENTS_FAILED):
                v3[key][field] += doc[field]
        else:
            v3[key] = doc
    client.delete_by_query(
        index=names.rollups_alias, body={"query": {"match_all": {}}}, refresh=True
    )
    actions = [{"_index": i, "_id": d, "_source": doc} for (i, d), doc in v3.items()]
    helpers.bulk(client, actions, refresh=True)
    found = client.get(index=names.state_index, id=state.STATE_ID)["_source"]
    found["rollups"]["schema"] = 3
    client.index(index=names.state_index, id=state.STATE_ID, body=found, refresh=True)
    as_single_lease_job(client, names)  # the schema-3 job held one lease, no shard documents
    details = sum(1 for h in hits if h["_source"][rs.LEVEL] == rs.LEVEL_DETAIL)
    return details - sum(1 for d in v3.values() if d[rs.LEVEL] == rs.LEVEL_DETAIL)


def _ask(http: TestClient, key: str, group_by: list[str]) -> dict[str, Any]:
    variables = {"m": MERCHANT, "s": iso(START), "e": iso(END), "metrics": METRICS}
    body = post(http, key, QUERY, {**variables, "groupBy": group_by})
    assert "errors" not in body, body
    report: dict[str, Any] = body["data"]["metrics"]
    return report


def _check(report: dict[str, Any], events: list[Event], group_by: list[str]) -> None:
    """Totals, and per group the totals of its hourly points, equal the oracle's."""
    total = Acc()
    groups: dict[tuple[str, ...], Acc] = {}
    for e in events:
        total.add(e)
        key = tuple(getattr(e, d.lower()) or rs.MISSING for d in group_by)
        groups.setdefault(key, Acc()).add(e)
    assert [v["value"] for v in report["totals"]] == [total.value(m) for m in METRICS]
    for series in report["series"]:
        acc = groups[tuple(v["value"] for v in series["group"])]
        counts = [sum(p["values"][i]["value"] for p in series["points"]) for i in (0, 2, 4)]
        assert counts == [acc.value(METRICS[i]) for i in (0, 2, 4)]


@pytest.fixture(scope="module")
def events(api_client: OpenSearch, api_settings: Settings, api_names: Names) -> list[Event]:
    found = _events()
    index_events(api_client, api_settings, api_names, found, ingested_ms=1)
    catch_up(api_client, api_settings, api_names)
    return found


def test_a_schema_3_state_is_answered_from_raw_until_the_rebuild(
    http: TestClient,
    admin_key: str,
    events: list[Event],
    api_client: OpenSearch,
    api_settings: Settings,
    api_names: Names,
) -> None:
    assert sum(e.event_type == "dispute" for e in events) > 10
    for group_by in ([], ["DECLINE_CODE"]):
        report = _ask(http, admin_key, group_by)
        assert report["meta"]["sources"] == ["rollups"]
        _check(report, events, group_by)

    merged = _as_schema_3(api_client, api_names)
    assert merged > 0  # the old layout really differs: decline codes shared a document
    for group_by in ([], ["DECLINE_CODE"], ["EVENT_TYPE"]):
        report = _ask(http, admin_key, group_by)
        assert report["meta"]["sources"] == ["raw"]  # schema 3 lacks what these need
        _check(report, events, group_by)

    report = catch_up(api_client, api_settings, api_names)
    assert report.watermark_from is None  # a full rebuild, not an incremental run
    assert report.deleted > 0  # the schema-3 detail documents are gone
    for group_by in ([], ["DECLINE_CODE"], ["EVENT_TYPE"]):
        report_ = _ask(http, admin_key, group_by)
        assert report_["meta"]["sources"] == ["rollups"]
        _check(report_, events, group_by)
