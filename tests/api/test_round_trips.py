"""Decision 0260 on the real engine: what a report reads with the rollup state, and what that
saves.

A converted report of settled, rolled-up days, asked again, costs the engine one round trip
(the state ``mget``, which also brings the day packs' versions and the rates' version): no
versions ``mget`` of its own, no rates search. ``pulse fx load`` (storage.fx.load) is seen by
the very next request: load, ask, load other rates, ask again -> the new answer; rates
written without a version (not by ``load``) are read on every request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch

from api.app import create_app
from api.cache import ROLLUP_CELLS
from api.fx import RATE_TABLES
from pulse.naming import Names
from pulse.settings import Settings
from rollups.job import catch_up
from storage import arrivals, fx
from storage.arrivals import DAY_MS
from tests.api.conftest import post
from tests.api.engine_count import counted
from tests.api.helpers import index_events, iso, to_events

HOUR_MS = 3_600_000
MERCHANT = "mtrips"
QUERY = """
query($m: ID!, $s: DateTime!, $e: DateTime!, $rc: String) {
  metrics(merchantId: $m, range: {start: $s, end: $e}, granularity: HOUR,
          metrics: [EVENTS, GROSS_SALES], reportingCurrency: $rc) {
    series { points { values { value currency } } }
    totals { value currency }
    meta { sources }
  }
}
"""
PAYMENTS = 24  # one 10 EUR payment per hour of the day


def report_calls(calls: list[str], names: Names) -> list[str]:
    """The requests of a report: not those of the API keys and rate-limit indices (cached
    per key, read again on their own clocks)."""
    skip = (names.keys_index, names.ratelimit_index)
    return [c.split("?")[0] for c in calls if not any(index in c for index in skip)]


@pytest.fixture(scope="module")
def day(api_client: OpenSearch, api_settings: Settings, api_names: Names) -> int:
    """Two days ago (UTC midnight): a 10 EUR payment per hour, settled (its arrival bound is
    below W) and rolled up."""
    start = (int(time.time() * 1000) // DAY_MS - 2) * DAY_MS
    arrivals.Arrivals(api_client, api_names, 0).cover([start // DAY_MS], 1)
    events = to_events(
        {"event_id": f"e{n}", "merchant_id": MERCHANT, "event_type": "payment",
         "occurred_at": start + n * HOUR_MS + 5, "amount": 10.0, "currency": "EUR",
         "status": "succeeded"}
        for n in range(PAYMENTS)
    )  # fmt: skip
    index_events(api_client, api_settings, api_names, events, ingested_ms=1)
    catch_up(api_client, api_settings, api_names)
    return start


@pytest.fixture
def http(api_settings: Settings, api_client: OpenSearch) -> Iterator[TestClient]:
    ROLLUP_CELLS.clear()
    RATE_TABLES.clear()
    yield TestClient(create_app(api_settings, api_client))
    ROLLUP_CELLS.clear()
    RATE_TABLES.clear()


def load(client: OpenSearch, names: Names, day: int, eur_per_usd: str) -> None:
    """One EUR rate dated the report's day (USD needs none)."""
    text = f"date,currency,per_usd\n{fx.utc_day(day).isoformat()},EUR,{eur_per_usd}\n"
    fx.load(client, names, fx.parse_csv(text))


def gross(http: TestClient, key: str, day: int, currency: str | None = "USD") -> float:
    variables = {"m": MERCHANT, "s": iso(day), "e": iso(day + DAY_MS), "rc": currency}
    body = post(http, key, QUERY, variables)
    assert "errors" not in body, body
    report = body["data"]["metrics"]
    assert report["meta"]["sources"] == ["rollups"]
    assert report["totals"][0]["value"] == PAYMENTS
    value: float = report["totals"][1]["value"]
    return value


def test_a_repeated_converted_report_costs_one_round_trip(
    http: TestClient, admin_key: str, day: int, api_client: OpenSearch, api_names: Names
) -> None:
    load(api_client, api_names, day, "0.5")
    with counted(api_client) as calls:
        assert gross(http, admin_key, day) == PAYMENTS * 20.0
    first = report_calls(calls, api_names)
    assert "POST /_mget" in first and any(c.endswith("/_search") for c in first)  # the rates
    with counted(api_client) as calls:
        assert gross(http, admin_key, day) == PAYMENTS * 20.0
    # The state, holds, arrival bounds, pack versions and rates version: one mget, nothing else.
    assert report_calls(calls, api_names) == ["POST /_mget"]
    assert gross(http, admin_key, day, currency=None) == PAYMENTS * 10.0  # unconverted: EUR
    with counted(api_client) as calls:
        assert gross(http, admin_key, day, currency=None) == PAYMENTS * 10.0
    assert report_calls(calls, api_names) == ["POST /_mget"]


def test_a_rates_load_is_seen_by_the_next_request(
    http: TestClient, admin_key: str, day: int, api_client: OpenSearch, api_names: Names
) -> None:
    hits = RATE_TABLES.hits
    load(api_client, api_names, day, "0.5")
    assert gross(http, admin_key, day) == gross(http, admin_key, day) == PAYMENTS * 20.0
    load(api_client, api_names, day, "0.25")  # a corrected rate
    assert gross(http, admin_key, day) == PAYMENTS * 40.0
    assert gross(http, admin_key, day, currency="EUR") == PAYMENTS * 10.0
    load(api_client, api_names, day, "0.25")  # the same file again: the same answer
    assert gross(http, admin_key, day) == gross(http, admin_key, day) == PAYMENTS * 40.0
    assert RATE_TABLES.hits == hits + 2  # each second ask was answered from remembered rates


def test_rates_without_a_version_are_read_on_every_request(
    http: TestClient, admin_key: str, day: int, api_client: OpenSearch, api_names: Names
) -> None:
    """Rates stored before versions were written (or the version document gone): no key, so
    every request reads them, and a rate changed in place is answered at once."""
    load(api_client, api_names, day, "0.5")
    hits = RATE_TABLES.hits
    api_client.delete(index=api_names.fx_index, id=fx.VERSION_ID, refresh=True)
    assert gross(http, admin_key, day) == PAYMENTS * 20.0
    rate = fx.Rate(fx.utc_day(day), "EUR", "0.8")
    api_client.index(index=api_names.fx_index, id=rate.doc_id, body=rate.doc(), refresh=True)
    assert gross(http, admin_key, day) == PAYMENTS * 12.5
    assert RATE_TABLES.hits == hits
