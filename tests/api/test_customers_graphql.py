"""The customer half of issue 17 over GraphQL: the cohorts field's shape, zone offsets and
nulls, NEW/RETURNING_CUSTOMERS in a report, the coded errors of their limits, tenant scope,
and their price in the request budget."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from graphql import parse
from opensearchpy import OpenSearch

from api.app import EXTENSIONS, create_app
from api.budget import price
from api.keys import create_key
from api.schema import build_schema
from ingest.contract import Event
from pulse.naming import Names
from pulse.settings import Settings
from rollups.job import catch_up
from tests.api.conftest import post
from tests.api.helpers import index_events

SCHEMA = build_schema(EXTENSIONS)._schema
MONDAY = 1_704_067_200_000  # 2024-01-01T00:00:00Z, a Monday
DAY = 86_400_000
COHORTS = """query($m: ID!, $s: DateTime!, $e: DateTime!, $g: Granularity, $tz: String,
  $p: Int) { cohorts(merchantId: $m, range: {start: $s, end: $e}, granularity: $g,
  timezone: $tz, periods: $p) { cohorts { start customers retained }
  meta { sources watermark } } }"""
METRICS = """query($m: ID!, $g: Granularity, $by: [Dimension!], $f: [DimensionFilter!]) {
  metrics(merchantId: $m, range: {start: "2024-01-01T00:00:00Z", end: "2024-01-22T00:00:00Z"},
  metrics: [NEW_CUSTOMERS, RETURNING_CUSTOMERS, PAYMENTS], granularity: $g, groupBy: $by,
  filters: $f) { series { points { start values { metric value errorBound } } }
  totals { metric value } meta { sources } } }"""


def paid(event_id: str, customer: str, at_ms: int, merchant: str = "cm1") -> Event:
    return Event(event_id, merchant, "payment", at_ms, customer_id=customer, status="succeeded")


@pytest.fixture(scope="module")
def shop(api_client: OpenSearch, api_settings: Settings, api_names: Names) -> None:
    """Week 1: a, b and c buy; week 2: a comes back, d is new; week 3: a and d come back."""
    events = [
        paid("1", "a", MONDAY + 3_600_000),
        paid("2", "b", MONDAY + DAY),
        paid("3", "c", MONDAY + 2 * DAY),
        paid("4", "a", MONDAY + 8 * DAY),
        paid("5", "d", MONDAY + 9 * DAY),
        paid("6", "a", MONDAY + 15 * DAY),
        paid("7", "d", MONDAY + 16 * DAY),
        paid("8", "z", MONDAY, merchant="other"),
    ]
    index_events(api_client, api_settings, api_names, events, MONDAY + 30 * DAY)
    catch_up(api_client, api_settings, api_names)


@pytest.fixture(scope="module")
def merchant_key(api_client: OpenSearch, api_names: Names) -> str:
    return create_key(api_client, api_names, "cm1", admin=False)[0]


def cohorts(http: TestClient, key: str, **args: Any) -> dict[str, Any]:
    variables = {"m": "cm1", "s": "2024-01-01T00:00:00Z", "e": "2024-01-22T00:00:00Z", **args}
    return post(http, key, COHORTS, variables)  # type: ignore[no-any-return]


def code(body: dict[str, Any]) -> str:
    assert body.get("errors"), body
    return str(body["errors"][0]["extensions"]["code"])


def test_weekly_cohorts_with_retention_and_nulls(
    http: TestClient, merchant_key: str, shop: None
) -> None:
    body = cohorts(http, merchant_key, p=4)
    assert "errors" not in body, body
    rows = body["data"]["cohorts"]["cohorts"]
    assert [(r["start"], r["customers"]) for r in rows] == [
        ("2024-01-01T00:00:00+00:00", 3),
        ("2024-01-08T00:00:00+00:00", 1),
        ("2024-01-15T00:00:00+00:00", 0),
    ]
    assert rows[0]["retained"] == [1.0, 1 / 3, 1 / 3, 0.0]
    assert rows[1]["retained"] == [1.0, 1.0, 0.0, 0.0]
    assert rows[2]["retained"] == [None] * 4  # an empty cohort has no share to take
    meta = body["data"]["cohorts"]["meta"]
    assert meta["sources"] == ["raw", "first_purchases"] and meta["watermark"]


def test_cohorts_in_a_half_hour_zone_and_not_begun_periods(
    http: TestClient, admin_key: str, shop: None
) -> None:
    now_week = "2099-01-05T00:00:00"  # cohorts starting far ahead: their periods not begun
    body = cohorts(http, admin_key, g="DAY", tz="Asia/Kolkata", p=2, e="2024-01-03T00:00:00Z")
    rows = body["data"]["cohorts"]["cohorts"]
    # Local midnights at +05:30 (18:30 UTC): 2024-01-01T00:00Z is 05:30 local, so the local
    # days starting inside the range are Jan 2 (b buys) and Jan 3 (c buys).
    assert rows == [
        {"start": "2024-01-02T00:00:00+05:30", "customers": 1, "retained": [1.0, 0.0]},
        {"start": "2024-01-03T00:00:00+05:30", "customers": 1, "retained": [1.0, 0.0]},
    ]
    future = cohorts(http, admin_key, s=now_week, e="2099-01-06T00:00:00", g="DAY", p=3)
    assert future["data"]["cohorts"]["cohorts"] == [
        {"start": "2099-01-05T00:00:00+00:00", "customers": 0, "retained": [None] * 3}
    ]


def test_new_and_returning_in_a_report(http: TestClient, merchant_key: str, shop: None) -> None:
    body = post(http, merchant_key, METRICS, {"m": "cm1", "g": "WEEK"})
    assert "errors" not in body, body
    report = body["data"]["metrics"]
    weeks = [[v["value"] for v in p["values"]] for p in report["series"][0]["points"]]
    assert weeks == [[3.0, 0.0, 3.0], [1.0, 1.0, 2.0], [0.0, 2.0, 2.0]]
    errors = [v["errorBound"] for p in report["series"][0]["points"] for v in p["values"]]
    assert set(errors) == {0.0}  # exact
    assert [t["value"] for t in report["totals"]] == [4.0, 0.0, 7.0]
    assert report["meta"]["sources"][-1] == "first_purchases"


@pytest.mark.parametrize(
    "variables",
    [
        {"by": ["EVENT_TYPE"]},
        {"f": [{"dimension": "STATUS", "values": ["succeeded"]}]},
    ],
)
def test_unsplittable_dimensions_are_coded_errors(
    http: TestClient, admin_key: str, variables: dict[str, Any]
) -> None:
    body = post(http, admin_key, METRICS, {"m": "cm1", "g": "WEEK", **variables})
    assert code(body) == "BAD_USER_INPUT"
    assert "EVENT_TYPE" in body["errors"][0]["message"] or "STATUS" in body["errors"][0]["message"]


def test_grouped_by_channel(http: TestClient, admin_key: str, shop: None) -> None:
    body = post(http, admin_key, METRICS, {"m": "cm1", "g": "ALL", "by": ["CHANNEL"]})
    assert "errors" not in body, body
    assert [t["value"] for t in body["data"]["metrics"]["totals"]] == [4.0, 0.0, 7.0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({"g": "HOUR"}, "DAY, WEEK or MONTH"),
        ({"p": 0}, "periods"),
        ({"p": 61}, "periods"),
        ({"tz": "Mars/Olympus"}, "time zone"),
        ({"e": "2023-12-01T00:00:00Z"}, "after"),
        ({"g": "DAY", "s": "2022-06-01T00:00:00Z"}, "cohorts"),
        ({"m": "bad merchant"}, "merchantId"),
    ],
)
def test_cohort_limits_are_coded_errors(
    http: TestClient, admin_key: str, args: dict[str, Any], words: str
) -> None:
    body = cohorts(http, admin_key, **args)
    assert code(body) == "BAD_USER_INPUT", body
    assert words in body["errors"][0]["message"]


def test_merchant_keys_read_only_their_merchant(http: TestClient, merchant_key: str) -> None:
    assert code(cohorts(http, merchant_key, m="other")) == "FORBIDDEN"
    assert code(post(http, merchant_key, METRICS, {"m": "other"})) == "FORBIDDEN"


def test_key_cap_is_a_coded_error(
    api_settings: Settings, api_client: OpenSearch, admin_key: str, shop: None
) -> None:
    tight = TestClient(
        create_app(api_settings.model_copy(update={"customer_max_keys": 2}), api_client)
    )
    assert code(post(tight, admin_key, METRICS, {"m": "cm1", "g": "DAY"})) == "BAD_USER_INPUT"
    assert code(cohorts(tight, admin_key)) == "BAD_USER_INPUT"


def test_cohorts_are_priced_as_cohorts_times_periods(api_settings: Settings) -> None:
    query = """{ cohorts(merchantId: "m1", granularity: DAY, periods: 30,
      range: {start: "2024-01-01T00:00:00Z", end: "2024-03-01T00:00:00Z"}) { meta { tookMs } } }"""
    cost = price(SCHEMA, parse(query), None, {}, api_settings)
    assert cost is not None and cost.points == 60 * 30 and cost.reports == 1
    small = api_settings.model_copy(update={"max_request_points": 1000})
    with pytest.raises(Exception, match="1800 points"):
        price(SCHEMA, parse(query), None, {}, small)
