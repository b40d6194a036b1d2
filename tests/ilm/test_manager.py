"""The manager on the embedded engine: plan/apply idempotence, path choice, retention."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from opensearchpy import OpenSearch

from ilm import ism
from ilm.manager import apply, plan
from pulse.naming import Names
from pulse.settings import Settings
from storage.templates import ensure_templates, write_target
from tests.ilm.conftest import bulk_write, raw_doc


def kinds(actions: list[str]) -> set[str]:
    return {line.split()[0] for line in actions}


def seed_day(
    client: OpenSearch, names: Names, gen: str, day: date, n: int, served: bool = True
) -> str:
    target = write_target(client, names, gen, day, read_alias=served)
    if n:
        bulk_write(
            client, target, [(f"{gen}-{day}-{i}", raw_doc(f"{gen}-{i}", day)) for i in range(n)]
        )
    return target


def rollup_index(names: Names, gen: str, month: date) -> str:
    return f"{names.rollups_alias}-{gen}-{month.strftime('%Y.%m')}"


def month_start(d: date) -> date:
    return d.replace(day=1)


def existing(client: OpenSearch, names: Names) -> set[str]:
    found = client.indices.get(index=f"{names.raw_pattern},{names.rollups_pattern}")
    return set(found)


def test_plan_then_apply_twice_changes_nothing_the_second_time(
    os_client: OpenSearch, ilm_settings: Settings, names: Names
) -> None:
    now = datetime.now(tz=UTC)
    today = now.date()
    ensure_templates(os_client, ilm_settings, names)
    seed_day(os_client, names, "g1", today - timedelta(days=15), 2)  # past retention
    seed_day(os_client, names, "g1", today - timedelta(days=5), 2)  # due for warm
    seed_day(os_client, names, "g1", today, 25)  # over the rollover threshold (20 docs)
    yesterday = seed_day(os_client, names, "g1", today - timedelta(days=1), 1)
    stray = names.raw_backing_index("g1", today - timedelta(days=1), 2)  # not in the read alias
    os_client.indices.create(index=stray, body={"aliases": {yesterday: {"is_write_index": False}}})
    old_month = month_start(today - timedelta(days=800))
    os_client.indices.create(index=rollup_index(names, "g1", old_month))
    os_client.indices.create(index=rollup_index(names, "g1", month_start(today)))

    planned = plan(os_client, ilm_settings, names, now=now, plugins=[])
    assert not planned.ism
    lines = [a.dry_run() for a in planned.actions]
    assert kinds(lines) == {"create", "alias", "rollover", "warm", "delete"}, lines
    assert existing(os_client, names) >= {stray}  # plan changed nothing

    first = apply(os_client, ilm_settings, names, now=now, plugins=[])
    assert kinds(first) == kinds(lines)
    assert apply(os_client, ilm_settings, names, now=now, plugins=[]) == []
    assert plan(os_client, ilm_settings, names, now=now, plugins=[]).actions == []

    left = existing(os_client, names)
    assert names.raw_backing_index("g1", today - timedelta(days=15), 1) not in left
    assert rollup_index(names, "g1", old_month) not in left
    assert rollup_index(names, "g1", month_start(today)) in left
    assert names.raw_backing_index("g1", today + timedelta(days=1), 1) in left  # pre-created
    assert names.raw_backing_index("g1", today, 2) in left  # rolled over
    warm = names.raw_backing_index("g1", today - timedelta(days=5), 1)
    flags = os_client.indices.get_settings(index=warm)[warm]["settings"]["index"]
    assert flags["blocks"]["write"] == "true"
    assert stray in os_client.indices.get_alias(name=names.events_alias)


def test_ism_path_is_chosen_when_the_plugin_is_reported(
    os_client: OpenSearch, ilm_settings: Settings, names: Names
) -> None:
    now = datetime.now(tz=UTC)
    today = now.date()
    ensure_templates(os_client, ilm_settings, names)
    seed_day(os_client, names, "g1", today - timedelta(days=30), 1)
    seed_day(os_client, names, "g1", today - timedelta(days=5), 1)
    seed_day(os_client, names, "g1", today, 25)

    with_ism = plan(os_client, ilm_settings, names, now=now, plugins=[ism.ISM_PLUGIN])
    ism_kinds = kinds([a.dry_run() for a in with_ism.actions])
    assert with_ism.ism
    assert {"ism-policy", "ism-alias", "ism-attach"} <= ism_kinds
    assert not ism_kinds & {"rollover", "warm", "delete"}  # ISM does those

    without = plan(os_client, ilm_settings, names, now=now, plugins=["opensearch-security"])
    fallback_kinds = kinds([a.dry_run() for a in without.actions])
    assert not without.ism
    assert {"rollover", "warm", "delete"} <= fallback_kinds
    assert not any(k.startswith("ism-") for k in fallback_kinds)
    # Detection against the embedded engine itself (no plugin list injected): no ISM there.
    assert not ism.ism_available(os_client)


def test_retention_deletes_only_what_no_range_inside_retention_needs(
    os_client: OpenSearch, ilm_settings: Settings, names: Names
) -> None:
    now = datetime.now(tz=UTC)
    today = now.date()
    ensure_templates(os_client, ilm_settings, names)  # retention: 10 days
    days = {n: today - timedelta(days=n) for n in (30, 20, 11, 10, 2)}
    for gen, served in (("g1", True), ("g2", False)):
        for day in days.values():
            seed_day(os_client, names, gen, day, 1, served)
    # Day -20 of g1 also holds an event inside retention (misrouted): it must be kept.
    bulk_write(
        os_client,
        names.raw_index("g1", days[20]),
        [("late", raw_doc("late", days[2]))],
    )
    far, edge = month_start(today - timedelta(days=800)), month_start(today - timedelta(days=729))
    for month in (far, edge):
        os_client.indices.create(index=rollup_index(names, "g1", month))

    apply(os_client, ilm_settings, names, now=now, plugins=[])

    left = existing(os_client, names)
    for gen in ("g1", "g2"):
        backing = {n: names.raw_backing_index(gen, d, 1) for n, d in days.items()}
        assert backing[11] not in left and backing[30] not in left  # ended >= 10 days ago
        assert backing[10] in left and backing[2] in left  # partly or wholly inside retention
    assert names.raw_backing_index("g1", days[20], 1) in left  # refused: data inside retention
    assert names.raw_backing_index("g2", days[20], 1) not in left
    assert rollup_index(names, "g1", far) not in left
    assert rollup_index(names, "g1", edge) in left
