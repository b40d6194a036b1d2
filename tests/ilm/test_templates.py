"""Day write aliases: what the indexer writes to, what it checks, and the sizing rule."""

from __future__ import annotations

from datetime import date

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import RequestError

from pulse.naming import Names
from pulse.settings import Settings
from storage.templates import (
    RAW_PROPERTIES,
    day_backing_indices,
    ensure_templates,
    raw_shard_count,
    sealed_indices,
    write_target,
)
from tests.ilm.conftest import bulk_write, raw_doc

DAY = date(2026, 3, 1)


def test_write_target_is_the_day_alias_backed_by_one_write_index(
    os_client: OpenSearch, settings: Settings, names: Names
) -> None:
    ensure_templates(os_client, settings, names)
    target = write_target(os_client, names, "g1", DAY)
    assert target == names.raw_index("g1", DAY) == f"{names.namespace}-events-g1-2026.03.01"
    assert write_target(os_client, names, "g1", DAY) == target  # idempotent
    backing = names.raw_backing_index("g1", DAY, 1)
    assert day_backing_indices(os_client, names, "g1", DAY) == [backing]
    assert sealed_indices(os_client, names, "g1", DAY) == []
    bulk_write(os_client, target, [("a", raw_doc("a", DAY))])
    assert os_client.get(index=names.events_alias, id="a")["_index"] == backing
    mapping = os_client.indices.get_mapping(index=backing)[backing]["mappings"]
    assert mapping["dynamic"] == "strict"


def test_a_generation_being_rebuilt_stays_out_of_the_read_alias(
    os_client: OpenSearch, settings: Settings, names: Names
) -> None:
    ensure_templates(os_client, settings, names)
    write_target(os_client, names, "g1", DAY)
    write_target(os_client, names, "g2", DAY, read_alias=False)
    served = os_client.indices.get_alias(name=names.events_alias)
    assert list(served) == [names.raw_backing_index("g1", DAY, 1)]


def test_sealed_indices_are_the_non_write_members(
    os_client: OpenSearch, settings: Settings, names: Names
) -> None:
    alias = write_target(os_client, names, "g1", DAY)
    first, second = (names.raw_backing_index("g1", DAY, n) for n in (1, 2))
    os_client.indices.create(index=second, body={"aliases": {alias: {"is_write_index": False}}})
    assert sealed_indices(os_client, names, "g1", DAY) == [second]
    swap = [
        {"add": {"index": first, "alias": alias, "is_write_index": False}},
        {"add": {"index": second, "alias": alias, "is_write_index": True}},
    ]
    os_client.indices.update_aliases(body={"actions": swap})
    assert sealed_indices(os_client, names, "g1", DAY) == [first]
    assert sealed_indices(os_client, names, "g9", DAY) == []  # generation-aware


def test_sizing_rule() -> None:
    assert raw_shard_count(Settings(raw_shards=3)) == 3  # no expected volume: as configured
    # 1e9 events/day x 600 B = 558.8 GiB -> 19 shards of <= 30 GiB.
    assert raw_shard_count(Settings(raw_expected_daily_events=1_000_000_000)) == 19
    assert raw_shard_count(Settings(raw_expected_daily_events=1000)) == 1
    assert raw_shard_count(Settings(raw_expected_daily_events=10**12, raw_max_shards=64)) == 64


def test_a_raw_index_of_an_older_template_takes_decline_code(
    os_client: OpenSearch, settings: Settings, names: Names
) -> None:
    """A day index created before ``decline_code`` existed (strict mapping without it) gets
    the field at the next startup, so an upgraded indexer's documents are not refused."""
    old = {k: v for k, v in RAW_PROPERTIES.items() if k != "decline_code"}
    index = names.raw_backing_index("g1", DAY, 1)
    os_client.indices.create(
        index=index, body={"mappings": {"dynamic": "strict", "properties": old}}
    )
    doc = {**raw_doc("a", DAY), "decline_code": "do_not_honor"}
    with pytest.raises(RequestError):  # what an indexer would meet without the update
        os_client.index(index=index, id="a", body=doc)
    ensure_templates(os_client, settings, names)
    os_client.index(index=index, id="a", body=doc, refresh=True)
    assert os_client.get(index=index, id="a")["_source"]["decline_code"] == "do_not_honor"
