"""Index selection as a chain of small filters (elastic/curator style).

Each filter is a predicate over an :class:`IndexInfo`; ``select`` keeps the indices every
filter accepts. Filters never call the engine: they read one inventory snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from ilm.inventory import RAW, ROLLUP, IndexInfo

Filter = Callable[[IndexInfo], bool]


def select(indices: Iterable[IndexInfo], *filters: Filter) -> list[IndexInfo]:
    """The indices that pass every filter, in input order."""
    return [info for info in indices if all(f(info) for f in filters)]


def kind(wanted: str) -> Filter:
    if wanted not in (RAW, ROLLUP):
        raise ValueError(f"unknown index kind {wanted!r}")
    return lambda info: info.kind == wanted


def generation(wanted: str | None) -> Filter:
    """Only ``wanted``'s indices; None accepts every generation."""
    return lambda info: wanted is None or info.generation == wanted


def ended_before(cutoff: datetime) -> Filter:
    """Every event the index may hold is older than ``cutoff`` (its range ends at or before)."""
    return lambda info: info.end <= cutoff


def past_retention(now: datetime, days: int) -> Filter:
    """The whole time range is outside a retention of ``days`` ending at ``now``: nothing a
    query inside retention can need."""
    return ended_before(now - timedelta(days=days))


def write_index(expected: bool = True) -> Filter:
    return lambda info: info.is_write == expected


def rollable() -> Filter:
    """Backing indices under a day alias (a legacy plain day index cannot roll over)."""
    return lambda info: info.day_alias is not None


def in_read_alias(expected: bool = True) -> Filter:
    return lambda info: info.in_read_alias == expected


def write_blocked(expected: bool = True) -> Filter:
    return lambda info: info.write_blocked == expected


def over_thresholds(max_docs: int, max_primary_shard_bytes: float) -> Filter:
    """The rollover condition: too many documents or a primary shard too large."""
    return lambda info: info.docs >= max_docs or info.primary_shard_bytes >= max_primary_shard_bytes


def warm_done(replicas: int) -> Filter:
    return lambda info: info.write_blocked and info.replicas == replicas


def negate(f: Filter) -> Filter:
    return lambda info: not f(info)
