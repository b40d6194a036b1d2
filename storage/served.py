"""Which members of a read alias can hold documents of a time range.

Raw indices are per UTC day of ``occurred_at`` (``events-<gen>-YYYY.MM.DD[-NNNNNN]``) and rollup
indices per UTC month of ``hour`` (``rollups-<gen>-YYYY.MM``), so the name says which instants
an index can hold. Searching only the members whose span meets the query's range keeps a
query's cost to the days it asks about: OpenSearch fans a search out to every shard of every
index it names (its can_match phase skips some, after a round trip each), and the embedded
engine evaluates the query on every index it is sent to. Membership is read from the alias at
the time of the search, so a reprocess swap or a rollover is followed; an index whose name
carries no date is always searched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

DAY_SUFFIX = re.compile(r"-(\d{4})\.(\d{2})\.(\d{2})(?:-\d+)?$")
MONTH_SUFFIX = re.compile(r"-(\d{4})\.(\d{2})$")


@dataclass(frozen=True)
class Member:
    index: str
    start_ms: int | None  # None: the name gives no span; searched for every range
    end_ms: int | None


def members(client: OpenSearch, alias: str) -> list[Member]:
    """The alias's member indices with the span their names give (empty if no alias).

    Read as ``_cat/aliases`` text, one index name a line: the same names as ``GET
    _alias/<alias>``'s JSON object of objects at about half the bytes and no JSON to decode
    (~0.1 ms of a 30-day report's API CPU, decision 0310); an alias that does not exist is
    an empty answer, not a 404 (one round trip either way)."""
    try:
        found = client.cat.aliases(name=alias, h="index")
    except NotFoundError:
        return []
    if isinstance(found, str):
        return list(_members_of(found))
    return [_member(index) for index in _names(found)]


@lru_cache(maxsize=64)
def _members_of(text: str) -> tuple[Member, ...]:
    """The members a ``_cat/aliases`` text names, remembered per text (a pure function of it):
    an alias's members change a few times a day, and a 30-day report parsed its ~30-90 lines
    on every request (~2 % of the API's CPU per report, session 12)."""
    return tuple(_member(index) for index in _names(text))


def _names(found: Any) -> list[str]:
    """Sorted distinct index names of a ``_cat/aliases`` answer: text, or rows if an engine
    answers JSON."""
    if isinstance(found, list):
        names = {str(row["index"]) for row in found}
    else:
        names = {line.strip() for line in str(found or "").splitlines()}
    names.discard("")
    return sorted(names)


def covering(found: Sequence[Member], start_ms: int, end_ms: int) -> list[str]:
    """Members that can hold instants of [start, end)."""
    return [
        m.index
        for m in found
        if m.start_ms is None or m.end_ms is None or (m.start_ms < end_ms and start_ms < m.end_ms)
    ]


def indices_for(client: OpenSearch, alias: str, start_ms: int, end_ms: int) -> str | None:
    """Comma-joined members of ``alias`` covering [start, end); None when none can hold it."""
    names = covering(members(client, alias), start_ms, end_ms)
    return ",".join(names) if names else None


@lru_cache(maxsize=8192)
def _member(index: str) -> Member:
    """The span an index's name gives; remembered (a pure function of the name): a 30-day
    report read the raw alias's ~30-90 members and parsed every name again, ~0.5 ms of the
    API's CPU per report (py-spy, session 8)."""
    day = DAY_SUFFIX.search(index)
    if day is not None:
        start = _ms(int(day[1]), int(day[2]), int(day[3]))
        return Member(index, start, None if start is None else start + 86_400_000)
    month = MONTH_SUFFIX.search(index)
    if month is not None:
        year, mon = int(month[1]), int(month[2])
        nxt = (year + mon // 12, mon % 12 + 1)
        return Member(index, _ms(year, mon, 1), _ms(*nxt, 1))
    return Member(index, None, None)


def _ms(year: int, month: int, day: int) -> int | None:
    try:
        return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)
    except ValueError:
        return None
