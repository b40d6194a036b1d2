"""Composable index templates for raw events and rollups, and idempotent index bootstrap.

Templates carry mappings and settings only, never aliases: which backing index the read
aliases cover is decided explicitly (day creation, generation switch), so an index created by
a reindex or a replay never joins ``events`` before it is verified.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import RequestError

from pulse.naming import Names
from pulse.settings import Settings
from rollups import schema as rs

KEYWORD = {"type": "keyword"}
LONG = {"type": "long"}
DATE = {"type": "date", "format": "strict_date_optional_time||epoch_millis"}

RAW_PROPERTIES: dict[str, Any] = {
    "event_id": KEYWORD,
    "merchant_id": KEYWORD,
    "event_type": KEYWORD,
    "occurred_at": DATE,
    "ingested_at": DATE,
    "shipped_at": DATE,
    "customer_id": KEYWORD,
    "customer_hash": LONG,
    "session_id": KEYWORD,
    "amount_milli": LONG,
    "currency": KEYWORD,
    "status": KEYWORD,
    "payment_method": KEYWORD,
    "store_id": KEYWORD,
    "country": KEYWORD,
    "channel": KEYWORD,
    "device": KEYWORD,
    "attributes": {"type": "flat_object"},
}

ROLLUP_PROPERTIES: dict[str, Any] = {
    rs.MERCHANT: KEYWORD,
    rs.HOUR: DATE,
    **{d: KEYWORD for d in rs.DIMENSIONS},
    rs.EVENTS: LONG,
    rs.PAYMENTS_SUCCEEDED: LONG,
    rs.PAYMENTS_FAILED: LONG,
    rs.GROSS_MILLI: LONG,
    rs.REFUNDS_MILLI: LONG,
    rs.CUSTOMERS_SKETCH: {"type": "binary"},
    rs.COMPUTED_AT: DATE,
    rs.SOURCE_MAX_INGESTED_AT: DATE,
    rs.GENERATION: KEYWORD,
}


def raw_template(settings: Settings, names: Names) -> dict[str, Any]:
    return {
        "index_patterns": [names.raw_pattern],
        "priority": 100,
        "template": {
            "settings": {
                "number_of_shards": settings.raw_shards,
                "number_of_replicas": settings.raw_replicas,
                "refresh_interval": settings.refresh_interval,
            },
            "mappings": {"dynamic": "strict", "properties": RAW_PROPERTIES},
        },
        "_meta": {"managed_by": "pulse"},
    }


def rollups_template(settings: Settings, names: Names) -> dict[str, Any]:
    return {
        "index_patterns": [names.rollups_pattern],
        "priority": 100,
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": settings.raw_replicas},
            "mappings": {"dynamic": "strict", "properties": ROLLUP_PROPERTIES},
        },
        "_meta": {"managed_by": "pulse"},
    }


def ensure_templates(client: OpenSearch, settings: Settings, names: Names) -> None:
    """Put the index templates (idempotent: same body, same result)."""
    client.indices.put_index_template(
        name=f"{names.template_prefix}-events", body=raw_template(settings, names)
    )
    client.indices.put_index_template(
        name=f"{names.template_prefix}-rollups", body=rollups_template(settings, names)
    )


def ensure_index(client: OpenSearch, index: str, aliases: dict[str, Any] | None = None) -> bool:
    """Create ``index`` with ``aliases`` unless it exists; True when this call created it."""
    if client.indices.exists(index=index):
        return False
    try:
        client.indices.create(index=index, body={"aliases": aliases or {}})
    except RequestError as exc:
        if exc.error == "resource_already_exists_exception":
            return False  # a concurrent creator won; the index is there, which is what we need
        raise
    return True


def ensure_raw_day(client: OpenSearch, names: Names, generation: str, day: date) -> str:
    """The day's raw index of ``generation``, created and added to the read alias if missing."""
    index = names.raw_index(generation, day)
    ensure_index(client, index, {names.events_alias: {}})
    return index


def write_target(client: OpenSearch, names: Names, generation: str, day: date) -> str:
    """What the indexer puts in a bulk action's ``_index`` for events of ``day``.

    Creates the day's index (and read-alias membership) on first use. Owned by ilm: once a
    day can roll over, this returns the day's write alias instead of a concrete index.
    """
    return ensure_raw_day(client, names, generation, day)


def sealed_indices(client: OpenSearch, names: Names, generation: str, day: date) -> list[str]:
    """Backing indices of ``day`` that are no longer written to (non-empty only after a
    rollover). The indexer checks a batch's ids against them so a replay never duplicates."""
    return []
