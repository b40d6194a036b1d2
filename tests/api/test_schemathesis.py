"""An outside fuzzer: schemathesis (GraphQL mode) against the API served by real uvicorn on
loopback, real engines holding other merchants' events, with a merchant key.

Schemathesis reads the schema by introspection (POST), generates queries for each root field
and sends them over HTTP. Every answer: no 5xx; every error coded, without engine words or a
stack trace; no data of another merchant (the key's merchant has no events, so a non-zero
number anywhere would be somebody else's). A bounded count of examples per field, no
deadline per example; the whole module stays under a minute on the CI machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch
from schemathesis.checks import not_a_server_error
from schemathesis.graphql import nodes
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.errors import Code
from api.keys import create_key
from pulse.naming import Names
from pulse.settings import Settings
from tests.api.helpers import index_events
from tests.api.live import serving
from tests.api.test_fuzz import numbers
from tests.api.test_reports import MERCHANTS, make_events

FUZZER = "st-merchant"  # has no events at all
CODES = {c.value for c in Code}
ENGINE_WORDS = ("opensearch", "elasticsearch", "traceback", "index_not_found", "_shards",
                "search_phase", "pulse-keys", 'file "')  # fmt: skip
EXAMPLES = 50  # per root field
EXCLUDED = [positive_data_acceptance, not_a_server_error]

schemathesis.graphql.scalar(
    "DateTime",
    st.sampled_from(
        ["2024-03-07T00:00:00Z", "2024-03-08T13:30:00+05:30", "2024-03-10T02:30:00",
         "2024-03-14T00:00:00Z", "2024-11-03T01:30:00-04:00", "not a date", "",
         "2024-02-30T00:00:00Z", "9999-12-31T23:59:59Z"]
    ).map(nodes.String),
)  # fmt: skip
# Merchant ids: the key's own, the merchants that have events (a leak would show), nonsense.
schemathesis.graphql.scalar(
    "ID", st.sampled_from([FUZZER, *MERCHANTS, "", "*", "m0000?", "a" * 80]).map(nodes.String)
)


@pytest.fixture(scope="module")
def live(api_settings: Settings, api_client: OpenSearch, api_names: Names) -> Iterator[str]:
    events = make_events()[:600]  # all three merchants, an eighth of the indexing time
    index_events(api_client, api_settings, api_names, events, ingested_ms=1)
    with serving(api_settings, api_client) as url:
        yield url


@pytest.fixture(scope="module")
def fuzz_key(api_client: OpenSearch, api_names: Names) -> str:
    return create_key(api_client, api_names, FUZZER, admin=False)[0]


@pytest.fixture(scope="module")
def api_schema(live: str, fuzz_key: str) -> Any:
    return schemathesis.graphql.from_url(
        f"{live}/graphql", headers={"Authorization": f"Bearer {fuzz_key}"}, timeout=30
    )


def check(response: Any, asked: str) -> None:
    assert response.status_code < 500, response.text
    body = response.json()
    for error in body.get("errors") or []:
        assert error.get("extensions", {}).get("code") in CODES - {"INTERNAL"}, error
        message = error["message"].lower()
        assert not [w for w in ENGINE_WORDS if w in message and w not in asked.lower()], error
    data = body.get("data") or {}
    assert all(v == 0 for v in numbers(data)), data  # a leak would be non-zero
    fresh = data.get("freshness") or {}
    assert all(v is None for v in fresh.values()), data  # the key's merchant has no events


@pytest.mark.timeout(240)  # bounded in time as well as in examples
def test_schemathesis_finds_no_500_leak_or_engine_text(api_schema: Any, fuzz_key: str) -> None:
    """Each root field (Query.metrics, Query.freshness) with EXAMPLES generated queries.
    schemathesis' own pytest decorator does not run under pytest 9, so its strategies are
    driven by hypothesis directly; schemathesis still builds, sends and validates each case."""
    auth = {"Authorization": f"Bearer {fuzz_key}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {"Query.metrics", "Query.freshness"}
    sent: list[str] = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def fuzz(case: Any) -> None:
            response = case.call(headers=auth, timeout=30)
            check(response, str(case.body))
            # schemathesis' own checks, minus two whose GraphQL heuristics misread this API:
            # a coded refusal of generated input (merchantId "", end <= start) is the point,
            # and FORBIDDEN/RATE_LIMITED errors carry a path. Server errors are judged by
            # check() instead: no 5xx and no INTERNAL.
            case.validate_response(response, headers=auth, excluded_checks=EXCLUDED)
            sent.append(case.operation.label)

        fuzz()
    assert len(sent) >= EXAMPLES  # they really ran


def test_the_fuzzed_merchants_hold_data() -> None:
    """Leaks would show: the other merchants the generator may name do have events."""
    events = make_events()[:600]
    assert {e.merchant_id for e in events} >= set(MERCHANTS) and FUZZER not in MERCHANTS
