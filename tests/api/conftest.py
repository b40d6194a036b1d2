"""Module-scoped API fixtures: one indexed dataset and one app per test module."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch

from api.app import _engine, create_app
from api.keys import create_key
from pulse.naming import Names, names_for
from pulse.settings import Settings

Ask = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def api_settings(opensearch_url: str) -> Settings:
    return Settings(
        opensearch_url=opensearch_url,
        namespace=f"a{uuid.uuid4().hex[:10]}",
        rate_limit_per_minute=1_000_000,
        api_key_cache_ttl_s=1.0,  # revocation tests wait this long (api.authcache)
        log_json=False,
    )


@pytest.fixture(scope="module")
def api_names(api_settings: Settings) -> Names:
    return names_for(api_settings)


@pytest.fixture(scope="module")
def api_client(api_settings: Settings) -> OpenSearch:
    """The engine client the API builds for itself (libcurl, 32 kept connections): every API
    test reads and loads through the transport the API runs on (decision 0290)."""
    return _engine(api_settings)


@pytest.fixture(scope="module")
def http(api_settings: Settings, api_client: OpenSearch) -> TestClient:
    return TestClient(create_app(api_settings, api_client))


@pytest.fixture(scope="module")
def admin_key(api_client: OpenSearch, api_names: Names) -> str:
    return create_key(api_client, api_names, None, admin=True)[0]


def post(http: TestClient, key: str | None, query: str, variables: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()
