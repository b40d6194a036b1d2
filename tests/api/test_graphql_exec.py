"""The plain-data executor answers byte for byte what graphql-core's executor answers.

No engine: the key lookup answers an admin and ``service.report`` a report built from the plan
(bench.graphql_exec.fake_report, or a hand-made one). Each query runs through the app's schema
(api.app.EXTENSIONS, api.schema.Executor) and through the schema as it was before issue 6
(masking only, graphql-core's executor); the JSON texts must be equal, key order included.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import cache
from typing import Any

import pytest
import strawberry
from fastapi.testclient import TestClient

from api import schema as api_schema
from api import service
from api.app import EXTENSIONS, create_app
from api.executor import KnownDocuments
from api.keys import Principal
from api.masking import CodedErrors
from api.model import Metric, QueryPlan
from api.ratelimit import RateLimiter
from api.report import MetricValue, Point, Report, Series
from api.sources import Ctx
from bench.graphql_exec import fake_report
from pulse.clients import opensearch_client
from pulse.naming import names_for
from pulse.settings import Settings

ADMIN = Principal(key_id="test", merchant_id=None, admin=True)
SETTINGS = Settings(
    opensearch_url="http://127.0.0.1:9",  # never contacted: key lookups and reports are stubbed
    namespace="gqlexec",
    rate_limit_per_minute=10**9,
    rate_limit_shared=False,
)
ARGS = "$m: ID!, $s: DateTime!, $e: DateTime!, $g: Granularity, $tz: String"
RANGE = "merchantId: $m, range: {start: $s, end: $e}, granularity: $g, timezone: $tz"
ALL = "[EVENTS, PAYMENTS, GROSS_SALES, NET_SALES, AVERAGE_TICKET, UNIQUE_CUSTOMERS]"
FULL = f"""query({ARGS}) {{
  metrics({RANGE}, metrics: {ALL}) {{
    series {{ group {{ dimension value }}
              points {{ start complete values {{ metric value errorBound }} }} }}
    totals {{ metric value errorBound }} meta {{ sources watermark tookMs }}
    comparison {{ series {{ points {{ start }} }} }}
  }} }}"""
GROUPED = f"""query({ARGS}) {{
  metrics({RANGE}, metrics: [GROSS_SALES, PAYMENT_SUCCESS_RATE], groupBy: [COUNTRY, CHANNEL],
          limit: 3, compareTo: {{start: "2024-01-01T00:00:00Z", end: "2024-01-08T00:00:00Z"}}) {{
    __typename
    series {{ __typename group {{ dimension value }} points {{ ...P }} }}
    totals {{ value metric }}
    comparison {{ series {{ points {{ ...P }} }} totals {{ value }} meta {{ sources }} }}
  }} }}
fragment P on Point {{ when: start values {{ m: metric value v2: value }} complete }}"""
DIRECTIVES = f"""query({ARGS}, $withValues: Boolean!, $noStart: Boolean!) {{
  metrics({RANGE}, metrics: [EVENTS, AVERAGE_TICKET]) {{
    series {{ points {{ start @skip(if: $noStart) values @include(if: $withValues) {{ value }}
                       ... on Point {{ values {{ metric }} }} }} }}
  }} }}"""
HOURLY = {
    "m": "m1",
    "s": "2024-03-01T00:00:00Z",
    "e": "2024-03-31T00:00:00Z",
    "g": "HOUR",
    "tz": "UTC",
}
DAILY = {
    "m": "m1",
    "s": "2024-01-01T00:00:00Z",
    "e": "2024-03-31T00:00:00Z",
    "g": "DAY",
    "tz": "UTC",
}

Build = Callable[[QueryPlan], Report]


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Build]]:
    """Stub the engine; the test may push its own report builder (default: fake_report)."""
    builders: list[Build] = [fake_report]
    monkeypatch.setattr(api_schema, "lookup", lambda *_args: ADMIN)
    monkeypatch.setattr(service, "report", lambda _ctx, plan: builders[-1](plan))
    yield builders


@cache
def schemas(new: bool) -> strawberry.Schema:
    """The app's schema, or the one before issue 6 (masking only, graphql-core's executor)."""
    if new:
        return api_schema.build_schema(EXTENSIONS)
    return api_schema.build_schema([CodedErrors], plain_executor=False)


def execute(query: str, variables: dict[str, Any], new: bool) -> str:
    """The response document (data, then errors) as JSON text, key order kept."""
    schema = schemas(new)
    ctx = Ctx(opensearch_client(SETTINGS.opensearch_url or ""), names_for(SETTINGS), SETTINGS)
    context = api_schema.Context(ctx, RateLimiter(10**9), "Bearer test")
    result = asyncio.run(schema.execute(query, variables, context_value=context))
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    return json.dumps(body)


def same(query: str, variables: dict[str, Any]) -> dict[str, Any]:
    new, old = execute(query, variables, new=True), execute(query, variables, new=False)
    assert new == old
    parsed: dict[str, Any] = json.loads(new)
    return parsed


@pytest.mark.parametrize(
    "variables",
    [
        HOURLY,
        DAILY,
        {**HOURLY, "tz": "Asia/Kathmandu"},  # +05:45
        {**DAILY, "s": "2024-03-01T00:00:00Z", "tz": "America/New_York"},  # across DST
        {**HOURLY, "g": "ALL"},
    ],
    ids=["hourly", "daily", "kathmandu-hourly", "new-york-dst-daily", "all"],
)
def test_full_selection_is_identical(reports: list[Build], variables: dict[str, Any]) -> None:
    body = same(FULL, variables)
    points = body["data"]["metrics"]["series"][0]["points"]
    assert points and len(points[0]["values"]) == 6


def test_grouped_with_comparison_aliases_fragments_and_typename(reports: list[Build]) -> None:
    body = same(GROUPED, DAILY)
    metrics = body["data"]["metrics"]
    assert metrics["__typename"] == "Report" and metrics["series"][0]["__typename"] == "Series"
    assert len(metrics["series"]) == 3 and metrics["comparison"]["series"][0]["points"]
    assert list(metrics["series"][0]["points"][0]) == ["when", "values", "complete"]
    assert list(metrics["series"][0]["points"][0]["values"][0]) == ["m", "value", "v2"]


@pytest.mark.parametrize(("with_values", "no_start"), [(True, False), (False, True)])
def test_skip_and_include(reports: list[Build], with_values: bool, no_start: bool) -> None:
    variables = {**DAILY, "withValues": with_values, "noStart": no_start}
    point = same(DIRECTIVES, variables)["data"]["metrics"]["series"][0]["points"][0]
    assert ("start" in point) is not no_start
    assert list(point["values"][0]) == (["value", "metric"] if with_values else ["metric"])


def hand_made(plan: QueryPlan) -> Report:
    """Two hourly buckets: the second without payments (null average ticket and bound)."""
    paid = [MetricValue(Metric.EVENTS, 3.0, 0.0), MetricValue(Metric.AVERAGE_TICKET, 12.5, 0.0)]
    unpaid = [MetricValue(Metric.EVENTS, 1.0, 0.0), MetricValue(Metric.AVERAGE_TICKET, None, None)]
    points = [Point(plan.boundaries[0], paid, True), Point(plan.boundaries[1], unpaid, False)]
    totals = [MetricValue(Metric.EVENTS, 4.0, 0.0), MetricValue(Metric.AVERAGE_TICKET, 12.5, 0.0)]
    return Report([Series([], points)], totals, ["raw"], None, 7, plan.timezone)


def test_hand_checked_answer_with_nulls_in_a_half_hour_zone(reports: list[Build]) -> None:
    reports.append(hand_made)
    variables = {**HOURLY, "s": "2024-03-01T00:00:00Z", "e": "2024-03-01T02:00:00Z"}
    query = FULL.replace(ALL, "[EVENTS, AVERAGE_TICKET]")
    body = same(query, {**variables, "tz": "Asia/Kolkata"})
    metrics = body["data"]["metrics"]
    assert metrics["series"][0]["points"][1] == {
        "start": "2024-03-01T06:00:00+05:30",  # hours of the zone: 05:00, 06:00
        "complete": False,
        "values": [
            {"metric": "EVENTS", "value": 1.0, "errorBound": 0.0},
            {"metric": "AVERAGE_TICKET", "value": None, "errorBound": None},
        ],
    }
    assert metrics["meta"] == {"sources": ["raw"], "watermark": None, "tookMs": 7}
    assert metrics["comparison"] is None and metrics["series"][0]["group"] == []


def broken(change: Callable[[Report], None]) -> Build:
    def build(plan: QueryPlan) -> Report:
        rep = hand_made(plan)
        change(rep)
        return rep

    return build


@pytest.mark.parametrize(
    "change",
    [
        lambda rep: rep.series[0].points.__setitem__(
            1,
            replace(rep.series[0].points[1], values=[MetricValue(None, 1.0, 0.0)]),  # type: ignore[arg-type]
        ),
        lambda rep: rep.totals.__setitem__(0, MetricValue(Metric.EVENTS, math.nan, 0.0)),
        lambda rep: rep.totals.__setitem__(0, MetricValue(Metric.EVENTS, "many", 0.0)),  # type: ignore[arg-type]
        lambda rep: setattr(rep, "sources", None),
        lambda rep: rep.series[0].points.__setitem__(
            1,
            replace(rep.series[0].points[1], values=[None, None]),
        ),
    ],
    ids=["null-for-non-null-enum", "nan-float", "string-float", "null-list", "null-object-item"],
)
def test_errors_and_null_propagation_are_identical(
    reports: list[Build], change: Callable[[Report], None]
) -> None:
    reports.append(broken(change))
    variables = {**HOURLY, "e": "2024-03-01T02:00:00Z"}
    body = same(FULL.replace(ALL, "[EVENTS, AVERAGE_TICKET]"), variables)
    assert body["errors"][0]["extensions"] == {"code": "INTERNAL"}
    assert body["errors"][0]["path"][:2] == ["metrics", body["errors"][0]["path"][1]]


def test_the_plain_path_is_taken(reports: list[Build], monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the root field goes through graphql-core's per-field execution."""
    calls: list[str] = []
    original = api_schema.Executor.execute_field

    def counting(self: Any, parent_type: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(parent_type.name)
        return original(self, parent_type, *args, **kwargs)

    monkeypatch.setattr(api_schema.Executor, "execute_field", counting)
    execute(FULL, HOURLY, new=True)
    assert calls == ["Query"]


def test_http_answers_are_identical(reports: list[Build]) -> None:
    """Through the ASGI app too: the same response bytes."""
    client = opensearch_client(SETTINGS.opensearch_url or "")
    new = TestClient(create_app(SETTINGS, client))
    old_schema = api_schema.build_schema([CodedErrors], plain_executor=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("api.app.build_schema", lambda _extensions: old_schema)
        old = TestClient(create_app(SETTINGS, client))
    body = {"query": GROUPED, "variables": {**DAILY, "tz": "Asia/Kathmandu"}}
    headers = {"Authorization": "Bearer test"}
    answers = [c.post("/graphql", json=body, headers=headers) for c in (new, old)]
    assert answers[0].status_code == answers[1].status_code == 200
    assert answers[0].content == answers[1].content and b'"errors"' not in answers[0].content


@pytest.mark.parametrize(
    "query",
    ["0", "{ metrics(", "{ nope }", FULL.replace("tookMs", "tookSeconds"), FULL],
    ids=["garbage", "syntax", "unknown-root-field", "unknown-field", "valid"],
)
def test_known_documents_change_no_answer(reports: list[Build], query: str) -> None:
    """Asked again once a valid text is remembered: answered as without remembering."""
    first = execute(query, HOURLY, new=True)
    remembered = (schemas(True), query) in KnownDocuments._known
    assert remembered is (query == FULL)
    assert execute(query, HOURLY, new=True) == first == execute(query, HOURLY, new=False)
    errors = json.loads(first).get("errors", [])
    assert all(error["extensions"]["code"] == "BAD_USER_INPUT" for error in errors)
