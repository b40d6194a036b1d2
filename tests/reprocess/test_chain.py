"""The replay's chain of steps (reprocess/chain.py, docs/decisions/0225) on the real engine:
select, checkpoint (before the write), write and confirm, and a re-read after a crash."""

from __future__ import annotations

from opensearchpy import OpenSearch

from pulse.clock import DAY_MS, now_ms
from pulse.naming import Names
from reprocess import generations as gens
from reprocess import runs
from reprocess.chain import ReplayChain
from reprocess.firstcopy import FirstCopies
from reprocess.plan import DayPlan, Plan
from reprocess.runs import Run
from reprocess.service import Context
from storage.targets import day_date
from tests.indexer.test_steps import Rec, _payment

NEW = "g7"


def _plan(day: int) -> Plan:
    name = day_date(day).isoformat()
    days = [DayPlan(name, "g1", [], 0, f"raw-{NEW}-{name}")]
    start = day * DAY_MS
    return Plan("replay", NEW, start, start + DAY_MS, days, start_offsets={"0": 0, "1": 0})


def _stored(client: OpenSearch, names: Names, day: int) -> list[str]:
    indices = ",".join(gens.generation_indices(client, names, NEW, day_date(day)))
    client.indices.refresh(index=indices)
    body = {"query": {"match_all": {}}, "size": 1000, "_source": ["event_id"]}
    hits = client.search(index=indices, body=body)["hits"]["hits"]
    return sorted(h["_source"]["event_id"] for h in hits)


def test_the_replay_chain_checkpoints_before_writing_and_rereads_without_counting_twice(
    ctx: Context,
) -> None:
    client, names, settings = ctx.client, ctx.names, ctx.settings
    now = now_ms()
    day = now // DAY_MS - 1
    at = day * DAY_MS + 3_600_000
    gens.ensure_unaliased_day(client, names, NEW, day_date(day))
    run = runs.create(client, names, _plan(day))
    records = [
        Rec(0, 0, _payment("a", at)),
        Rec(0, 1, _payment("b", at + 1)),
        Rec(0, 2, _payment("a", at + 2)),  # a second copy, same day: not written, not tallied
        Rec(0, 3, _payment("d", at + 3)),
        Rec(1, 0, b"{not json"),  # invalid: counted, never written or dead-lettered again
        Rec(1, 1, _payment("c", at - 3 * DAY_MS)),  # outside the range
    ]
    seen_at_checkpoint: list[tuple[list[str], dict[str, int], dict[str, int]]] = []

    def checkpointed(saved: Run) -> None:
        stored = runs.load(client, names, saved.run_id)  # what a resumed run would find
        seen_at_checkpoint.append(
            (_stored(client, names, day), stored.offsets, stored.pending_from)
        )

    def indices_for(d: int) -> list[str]:
        return gens.generation_indices(client, names, NEW, day_date(d))

    copies = FirstCopies(client, settings.indexer_conflict_days, indices_for)
    with ReplayChain(
        client, settings, names, run, copies, {day}.__contains__, None, checkpointed
    ) as chain:
        chain.feed(records)
        chain.join()
    # Saved before the batch reached the writer: nothing stored yet, offsets after the poll,
    # pending_from at the batch's first offsets (not confirmed durable yet).
    assert seen_at_checkpoint == [([], {"0": 4, "1": 2}, {"0": 0, "1": 2})]
    assert _stored(client, names, day) == ["a", "b", "d"]
    stats = {k: run.stats.get(k, 0) for k in ("read", "invalid", "outside", "duplicates")}
    assert stats == {"read": 6, "invalid": 1, "outside": 1, "duplicates": 1}
    assert (run.stats["tallied"], run.stats["written"]) == (3, 3)

    # A crash before confirming: the resumed run re-reads from pending_from. The records are
    # below the checkpoint: re-written (stored copies are skipped), never tallied again.
    copies = FirstCopies(client, settings.indexer_conflict_days, indices_for)
    with ReplayChain(client, settings, names, run, copies, {day}.__contains__) as chain:
        chain.feed(records)
        chain.join()
    assert (run.stats["read"], run.stats["tallied"], run.stats["written"]) == (6, 3, 3)
    assert run.offsets == {"0": 4, "1": 2}
    assert _stored(client, names, day) == ["a", "b", "d"]
