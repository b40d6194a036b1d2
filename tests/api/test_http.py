"""The HTTP surface: auth, tenancy, error codes, rate limits, probes, metrics, GraphiQL."""

from __future__ import annotations

import gc
import time
from typing import Any
from unittest import mock

import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch

from api.app import GC_THRESHOLDS, create_app
from api.keys import create_key, revoke
from pulse.clients import opensearch_client
from pulse.naming import Names
from pulse.settings import Settings
from tests.api.conftest import post

Q = """query($m: ID!, $s: DateTime!, $e: DateTime!, $g: Granularity, $tz: String) {
  metrics(merchantId: $m, range: {start: $s, end: $e}, metrics: [EVENTS], granularity: $g,
          timezone: $tz) { totals { value } series { points { start } } } }"""
OK = {"m": "m1", "s": "2024-01-01T00:00:00Z", "e": "2024-01-02T00:00:00Z", "g": "HOUR", "tz": "UTC"}


@pytest.fixture(scope="module")
def merchant_key(api_client: OpenSearch, api_names: Names) -> str:
    return create_key(api_client, api_names, "m1", admin=False)[0]


def code(body: dict[str, Any]) -> str:
    assert body["data"] is None or body["data"].get("metrics") is None, body
    return str(body["errors"][0]["extensions"]["code"])


def test_a_merchant_key_reads_its_merchant_with_zero_filled_buckets(
    http: TestClient, merchant_key: str
) -> None:
    body = post(http, merchant_key, Q, OK)
    assert "errors" not in body
    points = body["data"]["metrics"]["series"][0]["points"]
    assert len(points) == 24 and body["data"]["metrics"]["totals"] == [{"value": 0.0}]


@pytest.mark.parametrize(
    ("change", "expected", "words"),
    [
        ({"m": "m2"}, "FORBIDDEN", "may not read"),
        ({"tz": "Mars/Base"}, "BAD_USER_INPUT", "time zone"),
        ({"e": "2024-01-01T00:00:00Z"}, "BAD_USER_INPUT", "after"),
        ({"e": "2026-01-01T00:00:00Z", "g": "MINUTE"}, "BAD_USER_INPUT", "too many buckets"),
        ({"g": "FORTNIGHT"}, "BAD_USER_INPUT", "FORTNIGHT"),
        ({"s": "yesterday"}, "BAD_USER_INPUT", "yesterday"),
        ({"m": "m1' OR 1=1"}, "BAD_USER_INPUT", "merchantId"),
    ],
)
def test_bad_requests_get_clear_coded_errors(
    http: TestClient, merchant_key: str, change: dict[str, str], expected: str, words: str
) -> None:
    body = post(http, merchant_key, Q, {**OK, **change})
    assert code(body) == expected
    assert words in body["errors"][0]["message"]


def test_admin_reads_any_merchant_and_keys_are_checked(
    http: TestClient,
    admin_key: str,
    api_client: OpenSearch,
    api_names: Names,
    api_settings: Settings,
) -> None:
    assert "errors" not in post(http, admin_key, Q, {**OK, "m": "any-merchant"})
    assert code(post(http, None, Q, OK)) == "UNAUTHENTICATED"
    assert code(post(http, "pulse_not-a-key", Q, OK)) == "UNAUTHENTICATED"
    key, principal = create_key(api_client, api_names, "m1", admin=False)
    assert "errors" not in post(http, key, Q, OK)
    assert revoke(api_client, api_names, principal.key_id)
    time.sleep(api_settings.api_key_cache_ttl_s)  # the stated bound (api.authcache)
    assert code(post(http, key, Q, OK)) == "UNAUTHENTICATED"


@pytest.mark.parametrize(("merchant", "admin"), [("m1", False), (None, True)])
def test_write_keys_cannot_read(
    http: TestClient, api_client: OpenSearch, api_names: Names, merchant: str | None, admin: bool
) -> None:
    """A write key (the collector's) is refused by the API with a code, even for its own
    merchant: a leaked ingest key exposes no analytics."""
    key, _ = create_key(api_client, api_names, merchant, admin, write=True)
    body = post(http, key, Q, OK)
    assert code(body) == "FORBIDDEN"
    assert "write key" in body["errors"][0]["message"]


def test_force_raw_is_admin_only(http: TestClient, merchant_key: str) -> None:
    q = Q.replace("timezone: $tz)", "timezone: $tz, forceSource: RAW)")
    assert code(post(http, merchant_key, q, OK)) == "FORBIDDEN"


def test_rate_limit_per_key(
    api_settings: Settings, api_client: OpenSearch, merchant_key: str, admin_key: str
) -> None:
    limited = TestClient(
        create_app(api_settings.model_copy(update={"rate_limit_per_minute": 3}), api_client)
    )
    for _ in range(3):
        assert "errors" not in post(limited, merchant_key, Q, OK)
    body = post(limited, merchant_key, Q, OK)
    assert code(body) == "RATE_LIMITED" and "retry" in body["errors"][0]["message"]
    assert "errors" not in post(limited, admin_key, Q, {**OK, "m": "m1"})  # another key


def test_engine_down_is_internal_never_500(api_settings: Settings, admin_key: str) -> None:
    dead = TestClient(create_app(api_settings, opensearch_client("http://127.0.0.1:9")))
    body = post(dead, admin_key, Q, OK)
    assert code(body) == "INTERNAL"
    assert "9" not in body["errors"][0]["message"] and "Traceback" not in str(body)
    assert dead.get("/readyz").status_code == 503
    assert dead.get("/healthz").status_code == 200


def test_probes_metrics_and_graphiql(http: TestClient) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").status_code == 200
    page = http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    assert "pulse_api_requests_total" in http.get("/metrics").text


def test_syntax_errors_are_bad_user_input(http: TestClient, merchant_key: str) -> None:
    body = post(http, merchant_key, "{ metrics(", {})
    assert code(body) == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"json": {}},
        {"json": {"query": ""}},
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
    ],
)
def test_unreadable_requests_get_a_coded_graphql_error(
    http: TestClient, request_kwargs: dict[str, Any]
) -> None:
    response = http.post("/graphql", **request_kwargs)
    assert response.status_code == 400
    body = response.json()
    assert body["data"] is None and code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["message"]


def test_an_unhandled_exception_is_a_coded_error_never_a_500(
    api_settings: Settings, api_client: OpenSearch, merchant_key: str
) -> None:
    app = create_app(api_settings, api_client)
    broken = TestClient(app, raise_server_exceptions=False)
    with mock.patch("api.app.Context", side_effect=RuntimeError("secret engine text")):
        response = broken.post(
            "/graphql",
            json={"query": Q, "variables": OK},
            headers={"Authorization": f"Bearer {merchant_key}"},
        )
    assert response.status_code == 200 and code(response.json()) == "INTERNAL"
    assert "secret" not in response.text
    with mock.patch("api.app._engine_reachable", side_effect=RuntimeError("secret")):
        probe = broken.get("/readyz")
    assert probe.status_code == 503 and probe.json()["error"]["extensions"]["code"] == "INTERNAL"
    metrics = broken.get("/metrics").text
    assert 'pulse_api_requests_total{path="/graphql",status="200"} 1.0' in metrics
    assert 'pulse_api_requests_total{path="/readyz",status="503"} 1.0' in metrics


def test_the_server_freezes_startup_objects_and_collects_young_ones_less_often(
    api_settings: Settings, api_client: OpenSearch
) -> None:
    before = gc.get_threshold()
    try:
        with TestClient(create_app(api_settings, api_client)) as client:
            assert client.get("/healthz").status_code == 200
            assert gc.get_threshold() == GC_THRESHOLDS and gc.get_freeze_count() > 0
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
