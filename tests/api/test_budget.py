"""The cost budget of a request (api.budget): priced before any engine work, refused with the
cost and the limit in the message, and charged to the rate limit in proportion to the cost."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from graphql import get_introspection_query, parse
from opensearchpy import OpenSearch

from api.app import EXTENSIONS, create_app
from api.budget import PRICED, price
from api.errors import BadInput
from api.keys import create_key
from api.schema import build_schema
from pulse.naming import Names
from pulse.settings import Settings
from tests.api.conftest import post
from tests.api.engine_count import counted

FIVE = "EVENTS, PAYMENTS, GROSS_SALES, REFUNDS, NET_SALES"
MINUTES_3D = '{start: "2024-01-01T00:00:00Z", end: "2024-01-04T00:00:00Z"}'  # 4,320 minutes
SCHEMA = build_schema(EXTENSIONS)._schema


def report(alias: str, span: str, metrics: str, granularity: str, extra: str = "") -> str:
    return (
        f'{alias}: metrics(merchantId: "m1", range: {span}, metrics: [{metrics}], '
        f"granularity: {granularity}{extra}) {{ totals {{ value }} }}"
    )


@pytest.fixture(scope="module")
def key(api_client: OpenSearch, api_names: Names) -> str:
    return create_key(api_client, api_names, "m1", admin=False)[0]


def errors_of(body: dict[str, Any]) -> tuple[str, str]:
    assert body["data"] is None, body
    error = body["errors"][0]
    return str(error["extensions"]["code"]), str(error["message"])


def test_points_sum_buckets_metrics_groups_and_comparisons(api_settings: Settings) -> None:
    """Berlin's spring-forward weekend has 47 hours; 2 metrics, the top 3 groups, and a
    comparison week-end of 48 hours: (47 + 48) x 2 x 3 = 570 points, 6 tokens of 100."""
    query = """query($tz: String) { metrics(merchantId: "m1", timezone: $tz, granularity: HOUR,
      range: {start: "2024-03-30T00:00:00", end: "2024-04-01T00:00:00"},
      compareTo: {start: "2024-03-23T00:00:00", end: "2024-03-25T00:00:00"},
      metrics: [EVENTS, PAYMENTS], groupBy: [COUNTRY], limit: 3) { totals { value } } }"""
    cost = price(SCHEMA, parse(query), None, {"tz": "Europe/Berlin"}, api_settings)
    assert cost is not None and (cost.points, cost.tokens, cost.reports) == (570, 6, 1)
    fresh = price(SCHEMA, parse('{ freshness(merchantId: "m1") { ingestedThrough } }'), None,
                  {}, api_settings)  # fmt: skip
    assert fresh is not None and (fresh.points, fresh.tokens) == (100, 1)  # a token at least


def test_over_budget_is_refused_before_any_engine_request(
    http: TestClient, key: str, api_client: OpenSearch
) -> None:
    """Three aliases of a 3-day MINUTE report with 5 metrics: 3 x 21,600 points > 50,000.
    Refused with the cost and the limit, and not one engine request made (not even the key
    lookup); two of them fit."""
    three = "{ " + " ".join(report(a, MINUTES_3D, FIVE, "MINUTE") for a in "abc") + " }"
    with counted(api_client) as calls:
        code, message = errors_of(post(http, key, three, {}))
    assert code == "BAD_USER_INPUT" and "64800 points" in message and "50000" in message
    assert calls == []
    two = "{ " + " ".join(report(a, MINUTES_3D, FIVE, "MINUTE") for a in "ab") + " }"
    assert "errors" not in post(http, key, two, {})


def test_comparisons_and_groups_count(http: TestClient, key: str) -> None:
    compare = f", compareTo: {MINUTES_3D}"
    alone = "{ " + report("a", MINUTES_3D, FIVE, "MINUTE", compare) + " }"
    assert "errors" not in post(http, key, alone, {})  # 43,200 points
    grouped = "{ " + report("a", MINUTES_3D, FIVE, "MINUTE", compare + ", groupBy: [COUNTRY], "
                            "limit: 2") + " }"  # fmt: skip
    code, message = errors_of(post(http, key, grouped, {}))
    assert code == "BAD_USER_INPUT" and "86400 points" in message


def test_aliases_depth_and_fields_are_limited(http: TestClient, key: str) -> None:
    eleven = "{ " + " ".join(f'f{i}: freshness(merchantId: "m1") {{ ingestedThrough }}'
                             for i in range(11)) + " }"  # fmt: skip
    code, message = errors_of(post(http, key, eleven, {}))
    assert code == "BAD_USER_INPUT" and "11 aliases" in message and "limit of 10" in message
    intro = post(http, key, get_introspection_query(descriptions=True), {})
    assert "errors" not in intro and intro["data"]["__schema"]["queryType"]["name"] == "Query"
    nested = "comparison { " * 18 + "totals { value }" + " }" * 18  # 1 + 18 + 2 levels
    deep = (
        "{ " + report("r", MINUTES_3D, "EVENTS", "DAY").replace("totals { value }", nested) + " }"
    )
    code, message = errors_of(post(http, key, deep, {}))
    assert code == "BAD_USER_INPUT" and "21 levels of nesting" in message
    # A fragment bomb: each fragment spreads the one before twice, 2^21 fields in all.
    bomb = ["fragment F0 on Query { __typename }"] + [
        f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, 21)
    ]
    code, message = errors_of(post(http, key, "{ ...F20 }\n" + "\n".join(bomb), {}))
    assert code == "BAD_USER_INPUT" and "1048576 fields" in message


def test_the_rate_limit_charges_the_cost(
    api_settings: Settings, api_client: OpenSearch, key: str
) -> None:
    """100 tokens a minute: a 30-day hourly report of 3 metrics costs 2,160 points = 22
    tokens, so four fit and the fifth is refused saying so; a freshness (1 token) still fits."""
    app = create_app(api_settings.model_copy(update={"rate_limit_per_minute": 100}), api_client)
    limited = TestClient(app)
    span = '{start: "2024-01-01T00:00:00Z", end: "2024-01-31T00:00:00Z"}'
    heavy = "{ " + report("r", span, "EVENTS, PAYMENTS, GROSS_SALES", "HOUR") + " }"
    for _ in range(4):
        assert "errors" not in post(limited, key, heavy, {})
    code, message = errors_of(post(limited, key, heavy, {}))
    assert code == "RATE_LIMITED" and "costs 22" in message
    fresh = '{ freshness(merchantId: "m1") { ingestedThrough } }'
    assert "errors" not in post(limited, key, fresh, {})


def test_the_issues_ten_alias_request_costs_most_of_a_minute(api_settings: Settings) -> None:
    """10 aliases of a 3-day MINUTE report (issue 23): 43,200 points, 432 of the default 600
    tokens a minute; with 40 aliases the request is over the alias limit."""
    ten = "{ " + " ".join(report(f"a{i}", MINUTES_3D, "EVENTS", "MINUTE") for i in range(10))
    cost = price(SCHEMA, parse(ten + " }"), None, {}, Settings())
    assert cost is not None and (cost.points, cost.tokens, cost.reports) == (43_200, 432, 10)
    forty = "{ " + " ".join(report(f"a{i}", MINUTES_3D, "EVENTS", "MINUTE") for i in range(40))
    with pytest.raises(BadInput, match="40 aliases"):
        price(SCHEMA, parse(forty + " }"), None, {}, api_settings)


REPEATED = """query($s: DateTime!, $m: [Metric!]!) { metrics(merchantId: "m1", granularity: HOUR,
  range: {start: $s, end: "2024-01-31T00:00:00Z"}, metrics: $m) { totals { value } } }"""


def test_a_repeated_request_is_priced_once_and_the_same(api_settings: Settings) -> None:
    """Costs are remembered by (schema, document object, operation, variables) and settings:
    the same request is the same cost, another variable or other settings are priced anew."""
    PRICED.clear()
    document = parse(REPEATED)
    week = {"s": "2024-01-24T00:00:00Z", "m": ["EVENTS"]}
    first = price(SCHEMA, document, None, week, api_settings)
    assert first is not None and first.points == 7 * 24
    assert price(SCHEMA, document, None, dict(week), api_settings) is first
    # An entry is the very objects it was priced for (an id can be reused once one is freed).
    key = PRICED.key(SCHEMA, document, None, week)
    assert key is not None and PRICED.get(key, SCHEMA, document, api_settings) is first
    assert PRICED.get(key, SCHEMA, parse(REPEATED), api_settings) is None
    two = price(SCHEMA, document, None, {**week, "m": ["EVENTS", "PAYMENTS"]}, api_settings)
    assert two is not None and two.points == 2 * 7 * 24
    longer = price(SCHEMA, document, None, {**week, "s": "2024-01-10T00:00:00Z"}, api_settings)
    assert longer is not None and longer.points == 21 * 24
    cheap = api_settings.model_copy(update={"rate_limit_points_per_token": 1})
    other = price(SCHEMA, document, None, week, cheap)
    assert other is not None and other.tokens == 7 * 24 != first.tokens
    again = price(SCHEMA, parse(REPEATED), None, week, api_settings)  # another document object
    assert again == first and again is not first


def test_a_cost_that_reads_the_clock_is_never_remembered(api_settings: Settings) -> None:
    """A cohort matrix is priced against the current time (its periods up to now)."""
    PRICED.clear()
    document = parse(
        '{ cohorts(merchantId: "m1", range: {start: "2024-01-01T00:00:00Z", '
        'end: "2024-03-01T00:00:00Z"}) { cohorts { start } } }'
    )
    cost = price(SCHEMA, document, None, {}, api_settings)
    assert cost is not None and cost.reports == 1
    key = PRICED.key(SCHEMA, document, None, {})
    assert key is not None and PRICED.get(key, SCHEMA, document, api_settings) is None
