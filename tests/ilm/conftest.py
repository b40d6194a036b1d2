"""Helpers for the ilm tests: settings with small lifecycle thresholds, and seeding."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time

import pytest
from opensearchpy import OpenSearch, helpers

from pulse.settings import Settings


@pytest.fixture
def ilm_settings(settings: Settings) -> Settings:
    """The test's namespace with thresholds small enough to cross in a test."""
    return settings.model_copy(
        update={
            "engine_timeout_s": 0.3,
            "raw_retention_days": 10,
            "ilm_warm_after_days": 3,
            "ilm_rollover_max_docs": 20,
            "ilm_precreate_days": 1,
        }
    )


def at_noon(day: date) -> int:
    return int(datetime.combine(day, time(12), tzinfo=UTC).timestamp() * 1000)


def raw_doc(doc_id: str, day: date, ingested_at_ms: int | None = None) -> dict[str, object]:
    occurred = at_noon(day)
    return {
        "event_id": doc_id,
        "merchant_id": "m1",
        "event_type": "page_view",
        "occurred_at": occurred,
        "ingested_at": ingested_at_ms if ingested_at_ms is not None else occurred,
    }


def bulk_write(
    client: OpenSearch, target: str, docs: Iterable[tuple[str, dict[str, object]]]
) -> None:
    """Index (id, doc) pairs into ``target``; every item must succeed."""
    actions = ({"_index": target, "_id": doc_id, "_source": doc} for doc_id, doc in docs)
    _, errors = helpers.bulk(client, actions, refresh=True, raise_on_error=False)
    assert not errors, errors
