"""`pulse reindex`: copy a range of days into a new generation with OpenSearch ``_reindex``
(mapping or template changes, no Kafka), then the same verify/switch/rollback as a replay.

Live writes keep landing in the old generation while the copy runs. The copy takes everything
ingested before ``T0`` (its snapshot time); the switch's fence copies what arrived since
(``ingested_at >= T0``, ``op_type=create`` so nothing already copied is touched).
"""

from __future__ import annotations

from typing import Any

from opensearchpy import OpenSearch

from pulse.naming import Names
from reprocess import generations as gens
from reprocess.plan import Plan
from reprocess.runs import Run, now_ms
from reprocess.tallies import Recorder
from reprocess.tally import engine_tally

REFRESH_MARGIN_MS = 5_000  # a doc ingested just before T0 may not be searchable yet


def before(t0: int) -> dict[str, Any]:
    return {"range": {"ingested_at": {"lt": t0}}}


def since(t0: int) -> dict[str, Any]:
    return {"range": {"ingested_at": {"gte": t0}}}


def copy_days(client: OpenSearch, names: Names, run: Run, chunk_rows: int) -> None:
    """The bulk copy: every day's old indices -> the new generation's write index; what it
    copies is tallied in batch documents of at most ``chunk_rows`` rows."""
    t0 = run.stats.setdefault("t0", now_ms() - REFRESH_MARGIN_MS)
    plan = run.plan
    tallies = Recorder(client, names, run)  # committed by the save that ends the phase
    for day in plan.days:
        gens.ensure_unaliased_day(client, names, plan.new_generation, gens.parse_day(day.day))
        if not day.old_indices:
            continue
        source = ",".join(day.old_indices)
        client.indices.refresh(index=source)
        tallies.record(engine_tally(client, source, day.day, before(t0)), chunk_rows)
        result = _reindex(client, names, plan, day.day, source, before(t0))
        run.count(
            copied=int(result.get("created", 0)), duplicates=int(result.get("version_conflicts", 0))
        )


def copy_since(client: OpenSearch, names: Names, plan: Plan, t0: int) -> int:
    """The fence: copy what the live indexer wrote to the old generation since ``t0``."""
    created = 0
    for day in plan.days:
        if day.old_indices:
            source = ",".join(day.old_indices)
            client.indices.refresh(index=source)
            created += int(
                _reindex(client, names, plan, day.day, source, since(t0)).get("created", 0)
            )
    return created


def _reindex(
    client: OpenSearch, names: Names, plan: Plan, day: str, source: str, query: dict[str, Any]
) -> dict[str, Any]:
    dest = gens.generation_indices(client, names, plan.new_generation, gens.parse_day(day))[-1]
    body = {
        "source": {"index": source, "query": query},
        "dest": {"index": dest, "op_type": "create"},
        "conflicts": "proceed",
    }
    result: dict[str, Any] = client.reindex(body=body, refresh=True, wait_for_completion=True)
    if result.get("failures"):
        raise RuntimeError(f"_reindex into {dest} failed: {result['failures'][:3]}")
    return result
