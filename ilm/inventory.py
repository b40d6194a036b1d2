"""What the engine holds: every raw and rollup index of a namespace, parsed and measured.

One snapshot (index settings, aliases, stats) is read per manager pass; filters and actions
work on these frozen records, and every action re-checks the engine before it changes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from opensearchpy import OpenSearch

from pulse.naming import DAY_FORMAT, Names

RAW = "raw"
ROLLUP = "rollup"
ROLLOVER_ALIAS_SETTING = "plugins.index_state_management.rollover_alias"


@dataclass(frozen=True)
class IndexInfo:
    """One managed index. ``start``/``end``: the half-open UTC range of event time it holds
    (a raw day, or a rollup month), from its name."""

    name: str
    kind: str  # RAW or ROLLUP
    generation: str
    start: datetime
    end: datetime
    seq: int | None  # backing index number; None for a legacy plain day index or a rollup
    day_alias: str | None  # raw only: the day's write alias
    is_write: bool  # raw only: the write index of its day alias
    in_read_alias: bool  # member of ``events`` / ``rollups``
    docs: int
    primary_bytes: int
    shards: int
    replicas: int
    write_blocked: bool
    created: datetime
    rollover_alias_setting: str | None

    @property
    def day(self) -> date:
        return self.start.date()

    @property
    def primary_shard_bytes(self) -> float:
        return self.primary_bytes / max(1, self.shards)


def raw_name_re(names: Names) -> re.Pattern[str]:
    prefix = re.escape(f"{names.events_alias}-")
    return re.compile(
        rf"^{prefix}(?P<gen>[^-]+)-(?P<day>\d{{4}}\.\d{{2}}\.\d{{2}})(?:-(?P<seq>\d+))?$"
    )


def rollup_name_re(names: Names) -> re.Pattern[str]:
    prefix = re.escape(f"{names.rollups_alias}-")
    return re.compile(rf"^{prefix}(?P<gen>[^-]+)-(?P<month>\d{{4}}\.\d{{2}})$")


def month_range(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def parse_name(names: Names, index: str) -> tuple[str, str, datetime, datetime, int | None] | None:
    """(kind, generation, start, end, seq) for a Pulse raw/rollup index name, else None."""
    raw = raw_name_re(names).match(index)
    if raw:
        day = datetime.strptime(raw["day"], DAY_FORMAT).replace(tzinfo=UTC)
        seq = int(raw["seq"]) if raw["seq"] else None
        return RAW, raw["gen"], day, day + timedelta(days=1), seq
    rollup = rollup_name_re(names).match(index)
    if rollup:
        year, month = (int(part) for part in rollup["month"].split("."))
        start, end = month_range(year, month)
        return ROLLUP, rollup["gen"], start, end, None
    return None


def load_inventory(client: OpenSearch, names: Names) -> list[IndexInfo]:
    """Every parseable raw and rollup index of the namespace, sorted by name."""
    pattern = f"{names.raw_pattern},{names.rollups_pattern}"
    meta = client.indices.get(index=pattern, allow_no_indices=True, expand_wildcards="open")
    if not meta:
        return []
    stats = client.indices.stats(index=pattern, metric="docs,store").get("indices", {})
    found = []
    for index in sorted(meta):
        info = _index_info(names, index, meta[index], stats.get(index, {}))
        if info is not None:
            found.append(info)
    return found


def _index_info(
    names: Names, index: str, meta: dict[str, Any], stats: dict[str, Any]
) -> IndexInfo | None:
    parsed = parse_name(names, index)
    if parsed is None:
        return None
    kind, generation, start, end, seq = parsed
    settings = meta.get("settings", {}).get("index", {})
    aliases: dict[str, Any] = meta.get("aliases", {})
    day_alias = names.raw_index(generation, start.date()) if kind == RAW and seq else None
    read_alias = names.events_alias if kind == RAW else names.rollups_alias
    primaries = stats.get("primaries", {})
    return IndexInfo(
        name=index,
        kind=kind,
        generation=generation,
        start=start,
        end=end,
        seq=seq,
        day_alias=day_alias,
        is_write=_is_write(aliases, day_alias, seq),
        in_read_alias=read_alias in aliases,
        docs=int(primaries.get("docs", {}).get("count", 0)),
        primary_bytes=int(primaries.get("store", {}).get("size_in_bytes", 0)),
        shards=int(settings.get("number_of_shards", 1)),
        replicas=int(settings.get("number_of_replicas", 0)),
        write_blocked=str(settings.get("blocks", {}).get("write", "false")).lower() == "true",
        created=datetime.fromtimestamp(int(settings.get("creation_date", 0)) / 1000, tz=UTC),
        rollover_alias_setting=_nested(settings, ROLLOVER_ALIAS_SETTING),
    )


def _is_write(aliases: dict[str, Any], day_alias: str | None, seq: int | None) -> bool:
    if seq is None:
        return True  # a legacy plain day index is written directly
    if day_alias is None or day_alias not in aliases:
        return False
    # The write flag is always set explicitly by ilm; an absent flag on a lone member is
    # OpenSearch's implicit write index, which the manager normalises on its next rollover.
    return (aliases[day_alias] or {}).get("is_write_index") is not False


def _nested(settings: dict[str, Any], dotted: str) -> str | None:
    """A setting read either flat ("a.b.c") or nested ({"a": {"b": {"c": ...}}})."""
    if dotted in settings:
        return str(settings[dotted])
    node: Any = settings
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return str(node)


def day_groups(indices: list[IndexInfo]) -> dict[str, list[IndexInfo]]:
    """Raw backing indices grouped by their day alias, oldest backing index first."""
    groups: dict[str, list[IndexInfo]] = {}
    for info in indices:
        if info.kind == RAW and info.day_alias:
            groups.setdefault(info.day_alias, []).append(info)
    return {alias: sorted(group, key=lambda i: i.seq or 0) for alias, group in groups.items()}
