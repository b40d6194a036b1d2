"""``pulse rollups backfill``: recompute every (merchant, hour) of an event-time range.

``rebuild`` is the same without resuming and with pruning: for ``pulse reprocess``.

Resumable: progress is a document in the state index, ``rollups.backfill.<gen>.<from>.<to>``,
whose ``next_hour`` advances after each hour's buckets are written and its day pack slots
updated (rollups.packs); running the same range again continues there (a finished range
returns at once). Only pairs that still have raw events are recomputed, so hours whose raw
indices retention already deleted keep their rollups. A backfill takes no lease: its writes
are versioned like the scheduler's (rollups.writer) and its pack updates compare-and-set
(rollups.packs), so running next to the scheduler cannot undo newer results, and it does not
move the watermark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

from pulse.naming import Names
from pulse.settings import Settings
from rollups import compute, customers
from rollups.job import RollupJob
from storage.rollup_schema import HOUR_MS, hour_start

HoursProgress = Callable[[int, int], None]  # (hours done, hours total), after each hour


@dataclass(frozen=True)
class BackfillReport:
    start_ms: int
    end_ms: int
    resumed_at: int  # the hour this invocation started from
    hours: int  # hours processed by this invocation
    pairs: int
    buckets: int


def progress_id(generation: str, start_ms: int, end_ms: int) -> str:
    return f"rollups.backfill.{generation}.{start_ms}.{end_ms}"


def hour_span(start_ms: int, end_ms: int) -> tuple[int, int]:
    """[start, end) widened to whole UTC hours."""
    if end_ms <= start_ms:
        raise ValueError("--to must be after --from")
    return hour_start(start_ms), -(-end_ms // HOUR_MS) * HOUR_MS


def backfill(
    client: OpenSearch,
    settings: Settings,
    names: Names,
    start_ms: int,
    end_ms: int,
    progress: HoursProgress | None = None,
    resume: bool = True,
    prune_absent: bool = False,
) -> BackfillReport:
    """Recompute the rollups of [start, end) hour by hour, resuming a previous attempt.

    ``resume=False`` starts over; ``prune_absent`` also deletes the hour's rollup documents
    of merchants without raw events in it (right after a reprocess, wrong after retention).
    """
    start, end = hour_span(start_ms, end_ms)
    job = RollupJob(client, settings, names)
    job.bootstrap()
    doc_id = progress_id(settings.generation, start, end)
    resumed = _next_hour(client, names, doc_id, start) if resume else start
    pairs = buckets = 0
    total_hours = (end - start) // HOUR_MS
    for hour in range(resumed, end, HOUR_MS):
        found = compute.pairs_between(
            client, job.raw, hour, hour + HOUR_MS, settings.rollup_page_size
        )
        computed_at = job.clock()
        totals = job.recompute_pairs(found, derive_packs=not prune_absent)
        if prune_absent:
            gone = job.writer.delete_absent(hour, {m for m, _ in found}, computed_at)
            job.packs.derive([*found, *((m, hour) for m in gone)])
        else:
            customers.observe(client, settings, names, found)  # rebuild re-derives at its end
        pairs += totals.pairs
        buckets += totals.buckets
        _save(client, names, doc_id, start, end, hour + HOUR_MS)
        if progress is not None:
            progress((hour + HOUR_MS - start) // HOUR_MS, total_hours)
    hours = (end - resumed) // HOUR_MS
    return BackfillReport(start, end, resumed, hours, pairs, buckets)


def rebuild(
    client: OpenSearch, settings: Settings, names: Names, start_ms: int, end_ms: int
) -> None:
    """Recompute [start, end) from scratch after its raw data was replaced (``pulse reprocess``
    after the alias swap): fits reprocess's ``RollupRebuild`` as
    ``functools.partial(rebuild, client, settings, names)``."""
    backfill(client, settings, names, start_ms, end_ms, resume=False, prune_absent=True)
    customers.rebuild(client, settings, names, start_ms, end_ms)


def _next_hour(client: OpenSearch, names: Names, doc_id: str, start: int) -> int:
    try:
        doc = client.get(index=names.state_index, id=doc_id)
    except NotFoundError:
        return start
    return int(doc["_source"]["rollups"]["next_hour"])


def _save(client: OpenSearch, names: Names, doc_id: str, start: int, end: int, nxt: int) -> None:
    body: dict[str, Any] = {
        "rollups": {"start": start, "end": end, "next_hour": nxt, "done": nxt >= end}
    }
    client.index(index=names.state_index, id=doc_id, body=body)
