"""The API's on-call metrics, read over HTTP from /metrics: operations by root field and
outcome code (rate-limit refusals included), latency by operation, engine errors by kind,
and labels that stay bounded whatever a client sends."""

from __future__ import annotations

from fastapi.testclient import TestClient
from opensearchpy import OpenSearch
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.keys import create_key
from pulse.clients import opensearch_client
from pulse.naming import Names
from pulse.settings import Settings
from tests.api.conftest import post

Q = """query($s: DateTime!, $e: DateTime!) {
  metrics(merchantId: "m1", range: {start: $s, end: $e}, metrics: [EVENTS]) {
    totals { value } } }"""
DAY = {"s": "2024-01-01T00:00:00Z", "e": "2024-01-02T00:00:00Z"}


def samples(http: TestClient, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric, keyed by their sorted labels, as a scraper reads them."""
    text = http.get("/metrics").text
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


OPS = "pulse_api_graphql_operations_total"


def test_operations_are_counted_by_root_field_and_code(
    api_settings: Settings, api_client: OpenSearch, api_names: Names
) -> None:
    key = create_key(api_client, api_names, "m1", admin=False)[0]
    settings = api_settings.model_copy(update={"rate_limit_per_minute": 2})
    http = TestClient(create_app(settings, api_client))
    for _ in range(3):  # the third is refused
        post(http, key, Q, DAY)
    post(http, None, Q, DAY)
    post(http, key, "{ metrics(", {})
    ops = samples(http, OPS)
    assert ops[(("code", "OK"), ("operation", "metrics"))] == 2
    assert ops[(("code", "RATE_LIMITED"), ("operation", "metrics"))] == 1
    assert ops[(("code", "UNAUTHENTICATED"), ("operation", "metrics"))] == 1
    assert ops[(("code", "BAD_USER_INPUT"), ("operation", "invalid"))] == 1
    latency = samples(http, "pulse_api_graphql_operation_seconds_count")
    assert latency[(("code", "OK"), ("operation", "metrics"))] == 2
    assert latency[(("code", "RATE_LIMITED"), ("operation", "metrics"))] == 1


def test_engine_errors_are_counted_by_kind(
    api_settings: Settings, api_client: OpenSearch, api_names: Names
) -> None:
    key = create_key(api_client, api_names, None, admin=True)[0]
    dead = TestClient(create_app(api_settings, opensearch_client("http://127.0.0.1:9")))
    body = post(dead, key, Q, DAY)
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL"
    assert samples(dead, OPS)[(("code", "INTERNAL"), ("operation", "metrics"))] == 1
    errors = samples(dead, "pulse_api_engine_errors_total")
    assert sum(errors.values()) >= 1
    assert {dict(labels)["kind"] for labels in errors} <= {"EngineUnavailable", "EngineTimeout"}


def test_labels_stay_bounded_whatever_the_client_sends(http: TestClient, admin_key: str) -> None:
    for field in ("merchant_m12345", "secret_key_abc"):
        post(http, admin_key, "{ " + field + " }", {})
    text = http.get("/metrics").text
    assert "m12345" not in text and "secret_key_abc" not in text
    operations = {dict(labels)["operation"] for labels in samples(http, OPS)}
    assert "invalid" in operations
