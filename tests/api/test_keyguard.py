"""Bogus keys cost the engine nothing (api.authcache): a negative cache of unknown key
hashes, a per-address limit on failed lookups answered before any engine read, revocation
within the stated bound, and a cached /readyz. Engine requests are counted on the client."""

from __future__ import annotations

import secrets
import time

import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch

from api.app import create_app
from api.keys import create_key, revoke
from pulse.naming import Names
from pulse.settings import Settings
from tests.api.conftest import post
from tests.api.engine_count import counted

Q = '{ freshness(merchantId: "m1") { ingestedThrough } }'


def code(body: dict[str, object]) -> str:
    errors = body["errors"]
    assert isinstance(errors, list)
    return str(errors[0]["extensions"]["code"])


@pytest.fixture
def app_settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(update={"api_key_cache_ttl_s": 1.0})


def bogus() -> str:
    return "pulse_" + secrets.token_urlsafe(32)


def test_a_thousand_random_keys_cost_at_most_ten_engine_requests(
    api_settings: Settings, api_client: OpenSearch, api_names: Names
) -> None:
    """Today's figure was 1,000 (one key GET each). Now the address's burst of 5 failed
    lookups (then 5 a minute) go to the engine and the rest are answered RATE_LIMITED from
    memory; a valid key already known to this replica still works from that address."""
    app_settings = api_settings.model_copy(update={"api_key_cache_ttl_s": 600.0})
    key = create_key(api_client, api_names, "m1", admin=False)[0]
    http = TestClient(create_app(app_settings, api_client))
    assert "errors" not in post(http, key, Q, {})  # known to the replica from now on
    codes: dict[str, int] = {}
    started = time.monotonic()
    with counted(api_client) as calls:
        for _ in range(1000):
            c = code(post(http, bogus(), Q, {}))
            codes[c] = codes.get(c, 0) + 1
    refilled = (time.monotonic() - started) * app_settings.api_auth_failures_per_minute / 60
    key_reads = [c for c in calls if api_names.keys_index in c]
    assert len(calls) == len(key_reads) <= app_settings.api_auth_failures_burst + refilled + 1
    assert len(calls) <= 10, calls  # the goal, with this machine's speed
    assert set(codes) == {"UNAUTHENTICATED", "RATE_LIMITED"} and codes["RATE_LIMITED"] >= 990
    assert "errors" not in post(http, key, Q, {})
    other = TestClient(create_app(app_settings, api_client), client=("10.9.8.7", 4000))
    assert code(post(other, bogus(), Q, {})) == "UNAUTHENTICATED"  # another address: own budget


def test_an_unknown_key_is_looked_up_once(app_settings: Settings, api_client: OpenSearch) -> None:
    http = TestClient(create_app(app_settings, api_client))
    made_up = bogus()
    with counted(api_client) as calls:
        assert code(post(http, made_up, Q, {})) == "UNAUTHENTICATED"
    assert len(calls) == 1
    with counted(api_client) as calls:
        for _ in range(20):  # more than the address's failure budget: cached, not counted
            assert code(post(http, made_up, Q, {})) == "UNAUTHENTICATED"
    assert calls == []


def test_revocation_takes_effect_within_the_cache_ttl(
    app_settings: Settings, api_client: OpenSearch, api_names: Names
) -> None:
    """A known key is served from memory for api_key_cache_ttl_s (1 s here): revoked, it is
    refused once that has passed — the stated bound — and from then on."""
    http = TestClient(create_app(app_settings, api_client))
    key, principal = create_key(api_client, api_names, "m1", admin=False)
    assert "errors" not in post(http, key, Q, {})
    with counted(api_client) as calls:
        assert "errors" not in post(http, key, Q, {})
    assert not [c for c in calls if api_names.keys_index in c]  # from the cache
    assert revoke(api_client, api_names, principal.key_id)
    time.sleep(app_settings.api_key_cache_ttl_s)
    assert code(post(http, key, Q, {})) == "UNAUTHENTICATED"
    assert code(post(http, key, Q, {})) == "UNAUTHENTICATED"


def test_readyz_asks_the_engine_at_most_once_per_cache_period(
    api_settings: Settings, api_client: OpenSearch
) -> None:
    http = TestClient(create_app(api_settings, api_client))
    with counted(api_client) as calls:
        for _ in range(50):
            assert http.get("/readyz").status_code == 200
    assert len(calls) == 1
    quick = TestClient(
        create_app(api_settings.model_copy(update={"readyz_cache_s": 0.2}), api_client)
    )
    with counted(api_client) as calls:
        assert quick.get("/readyz").status_code == 200
        time.sleep(0.25)
        assert quick.get("/readyz").status_code == 200
    assert len(calls) == 2
