"""Composable index templates for raw events and rollups, and idempotent index bootstrap.

Templates carry mappings and settings only, never aliases: which backing index the read
aliases cover is decided explicitly (day creation, generation switch), so an index created by
a reindex or a replay never joins ``events`` before it is verified.

Raw layout (docs/decisions/0020): the day name of DESIGN.md, ``events-<gen>-YYYY.MM.DD``, is
the day's *write alias*; its backing indices are ``events-<gen>-YYYY.MM.DD-000001``,
``-000002``... Exactly one of them is the alias's write index. A rollover adds the next
backing index and moves the write flag in one atomic alias update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError, RequestError

from pulse.naming import Names
from pulse.settings import Settings
from storage import rollup_schema as rs

KEYWORD = {"type": "keyword"}
LONG = {"type": "long"}
DATE = {"type": "date", "format": "strict_date_optional_time||epoch_millis"}
GIB = 1024**3

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
    "decline_code": KEYWORD,
    "attributes": {"type": "flat_object"},
    # The message a document came from (docs/decisions/0131: reprocessing fetches by these).
    "kafka_partition": LONG,
    "kafka_offset": LONG,
}

POSITION_FIELDS = ("kafka_partition", "kafka_offset")
# Fields added to RAW_PROPERTIES after raw indices existed: put on those indices at startup.
ADDED_RAW_FIELDS = (*POSITION_FIELDS, "decline_code")

ROLLUP_PROPERTIES: dict[str, Any] = {
    rs.MERCHANT: KEYWORD,
    rs.HOUR: DATE,
    **{d: KEYWORD for d in rs.DIMENSIONS},
    rs.EVENTS: LONG,
    rs.PAYMENTS_SUCCEEDED: LONG,
    rs.PAYMENTS_FAILED: LONG,
    rs.GROSS_MILLI: LONG,
    rs.REFUNDS_MILLI: LONG,
    rs.DISPUTES: LONG,
    rs.CUSTOMERS_SKETCH: {"type": "binary"},
    rs.COMPUTED_AT: DATE,
    rs.SOURCE_MAX_INGESTED_AT: DATE,
    rs.GENERATION: KEYWORD,
    rs.LEVEL: KEYWORD,
    rs.TOTAL_OF: KEYWORD,
    rs.DAY: DATE,
    rs.PACK: {"type": "object", "enabled": False},  # read whole, never searched
    rs.MONEY: {"type": "object", "enabled": False},  # TOTAL documents: read by the pack writer
}


def raw_shard_count(settings: Settings) -> int:
    """The sizing rule: a day's primary bytes spread over shards of ``raw_target_shard_gb``.

    shards = ceil(expected_daily_events x avg_doc_bytes / target_shard_bytes), clamped to
    [1, raw_max_shards]. Without an expected volume, ``raw_shards`` is used as configured.
    Rollover (``ilm_rollover_max_primary_shard_gb``) is the safety valve when a day is bigger.
    """
    if settings.raw_expected_daily_events <= 0:
        return settings.raw_shards
    daily_bytes = settings.raw_expected_daily_events * settings.raw_avg_doc_bytes
    shards = math.ceil(daily_bytes / (settings.raw_target_shard_gb * GIB))
    return max(1, min(settings.raw_max_shards, shards))


def raw_template(settings: Settings, names: Names) -> dict[str, Any]:
    return {
        "index_patterns": [names.raw_pattern],
        "priority": 100,
        "template": {
            "settings": {
                "number_of_shards": raw_shard_count(settings),
                "number_of_replicas": settings.raw_replicas,
                "refresh_interval": settings.refresh_interval,
                "codec": settings.raw_codec,
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


def desired_templates(settings: Settings, names: Names) -> dict[str, dict[str, Any]]:
    """Template name -> body, everything ``ensure_templates`` puts."""
    return {
        f"{names.template_prefix}-events": raw_template(settings, names),
        f"{names.template_prefix}-rollups": rollups_template(settings, names),
    }


def ensure_templates(client: OpenSearch, settings: Settings, names: Names) -> None:
    """Put the index templates (idempotent: same body, same result). Every component calls
    this at startup, so it stays cheap and never touches data indices."""
    for name, body in desired_templates(settings, names).items():
        client.indices.put_index_template(name=name, body=body)
    # Raw indices created before the Kafka position fields (or decline_code) existed take them
    # too (an additive mapping update: strict mappings would otherwise refuse the documents
    # that carry them).
    client.indices.put_mapping(
        index=names.raw_pattern,
        body={"properties": {f: RAW_PROPERTIES[f] for f in ADDED_RAW_FIELDS}},
        allow_no_indices=True,
        ignore_unavailable=True,
    )


def ensure_index(client: OpenSearch, index: str, aliases: dict[str, Any] | None = None) -> bool:
    """Create ``index`` with ``aliases`` unless it exists; True when this call created it."""
    if client.indices.exists(index=index):
        return False
    return create_index(client, index, {"aliases": aliases or {}})


def create_index(client: OpenSearch, index: str, body: dict[str, Any]) -> bool:
    """Create ``index``; False (not an error) when a concurrent creator got there first."""
    try:
        client.indices.create(index=index, body=body)
    except RequestError as exc:
        if exc.error == "resource_already_exists_exception":
            return False  # a concurrent creator won; the index is there, which is what we need
        raise
    return True


def ensure_raw_day(
    client: OpenSearch, names: Names, generation: str, day: date, read_alias: bool = True
) -> str:
    """The day's write alias ``events-<gen>-YYYY.MM.DD``, created with its first backing index
    if missing. ``read_alias``: the first backing index also joins ``events`` (the live
    generation); a generation being rebuilt passes False and is swapped in after verification.
    """
    alias = names.raw_index(generation, day)
    if client.indices.exists(index=alias):  # true for the alias, and for a legacy plain index
        return alias
    aliases: dict[str, Any] = {alias: {"is_write_index": True}}
    if read_alias:
        aliases[names.events_alias] = {}
    create_index(client, names.raw_backing_index(generation, day, 1), {"aliases": aliases})
    return alias


def write_target(
    client: OpenSearch, names: Names, generation: str, day: date, read_alias: bool = True
) -> str:
    """What the indexer puts in a bulk action's ``_index`` for events of ``day``: the day's
    write alias, guaranteed to exist when this returns (a bulk to a missing name would
    auto-create a plain index with the alias's name and break the day's rollover).

    Call it per batch rather than caching it for long: the manager deletes days past retention.
    """
    return ensure_raw_day(client, names, generation, day, read_alias)


def day_backing_indices(client: OpenSearch, names: Names, generation: str, day: date) -> list[str]:
    """Every backing index of the day's write alias, oldest first ([] if the day has none).
    A generation switch must move all of them in or out of ``events`` together."""
    return sorted(day_alias_members(client, names.raw_index(generation, day)))


def sealed_indices(client: OpenSearch, names: Names, generation: str, day: date) -> list[str]:
    """Backing indices of ``day`` that are no longer the write index (non-empty only after a
    rollover). The indexer checks a batch's ids against them (mget) so a replay never
    duplicates across a rollover. Call it per batch: a rollover may happen at any moment, and
    the manager's reconcile step (decision 0021) covers the batch that raced the switch."""
    members = day_alias_members(client, names.raw_index(generation, day))
    return sorted(index for index, is_write in members.items() if not is_write)


def day_alias_members(client: OpenSearch, alias: str) -> dict[str, bool]:
    """Backing index -> is it the write index. A lone member without an explicit flag is the
    write index (OpenSearch semantics); a legacy plain day index has no members."""
    try:
        found = client.indices.get_alias(name=alias)
    except NotFoundError:
        return {}
    return alias_members({index: body.get("aliases", {}) for index, body in found.items()}, alias)


def indices_and_aliases(client: OpenSearch, patterns: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Every concrete index matching one of ``patterns`` (wildcard patterns: one that matches
    nothing is no error), open or closed, with its aliases (alias -> that alias's body, e.g.
    ``is_write_index``): what ``sealed_indices`` and a listing of the indices of a day give,
    for several days in one request."""
    if not patterns:
        return {}
    found = client.indices.get_alias(index=",".join(patterns), expand_wildcards="all")
    return {index: body.get("aliases") or {} for index, body in found.items()}


def alias_members(listing: dict[str, dict[str, Any]], alias: str) -> dict[str, bool]:
    """``day_alias_members`` read from a listing (``indices_and_aliases``) that covers the
    alias's backing indices (named after it: ``Names.raw_backing_index``)."""
    flags = {
        index: (aliases[alias] or {}).get("is_write_index")
        for index, aliases in listing.items()
        if alias in aliases
    }
    if len(flags) == 1:
        return {index: flag is not False for index, flag in flags.items()}
    return {index: flag is True for index, flag in flags.items()}
