"""Which concrete indices serve a day, and the one atomic alias update that switches them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from opensearchpy import OpenSearch

from pulse.clock import DAY_MS as DAY_MS
from pulse.naming import DAY_FORMAT, Names
from storage.templates import ensure_raw_day


def parse_day(day: str) -> date:
    return datetime.strptime(day, DAY_FORMAT).replace(tzinfo=UTC).date()


def day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def days_between(start_ms: int, end_ms: int) -> list[date]:
    """UTC days intersecting [start, end)."""
    first = datetime.fromtimestamp(start_ms / 1000, tz=UTC).date()
    last = datetime.fromtimestamp((end_ms - 1) / 1000, tz=UTC).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def raw_name_re(names: Names) -> re.Pattern[str]:
    """events-<gen>-YYYY.MM.DD[-NNNNNN] (same layout as ilm's docs/decisions/0020)."""
    prefix = re.escape(f"{names.events_alias}-")
    return re.compile(rf"^{prefix}(?P<gen>[^-]+)-(?P<day>\d{{4}}\.\d{{2}}\.\d{{2}})(?:-\d+)?$")


def serving(client: OpenSearch, names: Names) -> dict[str, dict[str, list[str]]]:
    """day -> generation -> backing indices currently in the read alias ``events``."""
    if not client.indices.exists_alias(name=names.events_alias):
        return {}
    out: dict[str, dict[str, list[str]]] = {}
    pattern = raw_name_re(names)
    for index in sorted(client.indices.get_alias(name=names.events_alias)):
        match = pattern.match(index)
        if match is not None:
            out.setdefault(match["day"], {}).setdefault(match["gen"], []).append(index)
    return out


def generation_indices(client: OpenSearch, names: Names, generation: str, day: date) -> list[str]:
    """The concrete indices behind the day's name (write alias or legacy plain index)."""
    name = names.raw_index(generation, day)
    found = client.indices.get(index=name, ignore_unavailable=True, allow_no_indices=True)
    return sorted(found)


def ensure_unaliased_day(client: OpenSearch, names: Names, generation: str, day: date) -> str:
    """The new generation's day write alias, created *outside* the read alias."""
    return ensure_raw_day(client, names, generation, day, read_alias=False)


def swap_actions(names: Names, remove: Iterable[str], add: Iterable[str]) -> list[dict[str, Any]]:
    alias = names.events_alias
    actions: list[dict[str, Any]] = [{"remove": {"index": i, "alias": alias}} for i in remove]
    actions += [{"add": {"index": i, "alias": alias}} for i in add]
    return actions


def switch_days(
    client: OpenSearch, names: Names, targets: Mapping[date, str]
) -> list[dict[str, Any]]:
    """Make ``targets[day]`` the only generation serving each day, in ONE _aliases call.

    Idempotent: the actions are computed from what the alias holds now, so a resumed switch
    (or a rollback) converges to the same state. Returns the actions applied.
    """
    current = serving(client, names)
    remove, add = [], []
    for day, to_generation in targets.items():
        held = current.get(day.strftime(DAY_FORMAT), {})
        remove += [i for gen, idx in held.items() if gen != to_generation for i in idx]
        have = set(held.get(to_generation, []))
        add += [i for i in generation_indices(client, names, to_generation, day) if i not in have]
    actions = swap_actions(names, remove, add)
    if actions:
        client.indices.update_aliases(body={"actions": actions})
    return actions


def refresh(client: OpenSearch, names: Names, generation: str, days: Iterable[date]) -> None:
    targets = [names.raw_index(generation, d) for d in days]
    if targets:
        client.indices.refresh(index=",".join(targets), ignore_unavailable=True)
