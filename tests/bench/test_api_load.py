"""bench.api_load asks what a dashboard asks, and every report of its mix is answered.

Loadgen merchants take several currencies, so money without a reporting currency is
BAD_USER_INPUT; the bench once counted 5-6 % of its "reports" as such errors.
"""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from opensearchpy import OpenSearch

from api.app import create_app
from bench import api_load
from bench import query as query_bench
from ingest.loadgen import HOUR_MS, LoadSpec, multi_currency
from ingest.loadgen_rates import load_demo_rates
from pulse.keystore import create_key
from pulse.naming import Names
from pulse.settings import Settings


def test_every_report_of_the_mix_is_answered_for_mixed_currency_merchants(
    settings: Settings, names: Names, os_client: OpenSearch
) -> None:
    query_bench.load(os_client, settings, names, 1500, LoadSpec(merchants=8, seed=7))
    load_demo_rates(os_client, names, history_days=query_bench.HISTORY_DAYS)
    key, _ = create_key(os_client, names, None, admin=True, label="test")
    end = int(time.time() * 1000) // HOUR_MS * HOUR_MS + HOUR_MS
    http = TestClient(create_app(settings, os_client))
    headers = {"Authorization": f"Bearer {key}"}
    mixed = next(m for m in range(8) if multi_currency(m))
    for merchant in ("m00000", f"m{mixed:05d}"):
        for name, kind in api_load.KINDS.items():
            variables = api_load._variables(kind, merchant, end, "USD")
            body = {"query": api_load.QUERY, "variables": variables}
            answer = http.post("/graphql", json=body, headers=headers).json()
            assert "errors" not in answer, (merchant, name, answer.get("errors"))
            assert answer["data"]["metrics"]["series"], (merchant, name)
    # Without a reporting currency the mixed merchant's money is refused: what the bench hit.
    variables = api_load._variables(api_load.KINDS["30d_hourly"], f"m{mixed:05d}", end, "")
    body = {"query": api_load.QUERY, "variables": variables}
    (error,) = http.post("/graphql", json=body, headers=headers).json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert len(error["extensions"]["currencies"]) > 1
