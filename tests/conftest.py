"""Session fixtures: one pair of real engines (osmem-server, Tansu) shared by the whole run.

Each test that needs isolation takes ``settings``: a Settings object with its own namespace,
so its topics, indices, aliases and consumer groups never collide with another test's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from opensearchpy import OpenSearch

from pulse.clients import ensure_topics, opensearch_client
from pulse.engines import EmbeddedEngines, start_embedded
from pulse.naming import Names, names_for
from pulse.settings import Settings


@pytest.fixture(scope="session")
def engines() -> Iterator[EmbeddedEngines]:
    started = start_embedded(None, None)
    yield started
    started.stop()


@pytest.fixture(scope="session")
def opensearch_url(engines: EmbeddedEngines) -> str:
    assert engines.opensearch is not None
    return engines.opensearch.address


@pytest.fixture(scope="session")
def kafka_bootstrap(engines: EmbeddedEngines) -> str:
    assert engines.kafka is not None
    return engines.kafka.address


@pytest.fixture
def settings(opensearch_url: str, kafka_bootstrap: str, tmp_path: object) -> Settings:
    """Settings pointing at the session engines, in a namespace of this test's own."""
    return Settings(
        opensearch_url=opensearch_url,
        kafka_bootstrap=kafka_bootstrap,
        namespace=f"t{uuid.uuid4().hex[:10]}",
        state_dir=str(tmp_path),
        raw_partitions=4,
        kafka_session_timeout_ms=3000,
        kafka_heartbeat_interval_ms=500,
        log_json=False,
    )


@pytest.fixture
def names(settings: Settings) -> Names:
    return names_for(settings)


@pytest.fixture
def os_client(settings: Settings) -> OpenSearch:
    assert settings.opensearch_url
    return opensearch_client(settings.opensearch_url)


@pytest.fixture
def topics(settings: Settings, kafka_bootstrap: str) -> Names:
    """The test's events.raw / events.dlq topics, created."""
    ensure_topics(settings, kafka_bootstrap)
    return names_for(settings)
