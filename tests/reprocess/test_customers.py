"""First purchases through a reprocess switch and its rollback: the live generation misread
some succeeded payments as failed (so first purchases were late or missing); the switch's
rollup rebuild re-derives them for the replayed days, the rollback re-derives them back."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from ingest.contract import Event
from pulse.naming import day_of
from reprocess import runs
from reprocess.pipeline import current_processing
from reprocess.service import Context, Rollback
from rollups.job import catch_up
from storage import first_purchases as fp
from tests.reprocess.conftest import ALL as ALL_DAYS
from tests.reprocess.conftest import DAYS, live_write, make_events, reprocess, send
from tests.reprocess.graphql import as_events


def status_bug(event: Event, ingested_at_ms: int) -> dict[str, Any]:
    """The deliberate bug: about half of the succeeded payments are written as failed."""
    doc = current_processing(event, ingested_at_ms)
    if (
        doc.get("status") == "succeeded"
        and hashlib.blake2b(event.event_id.encode()).digest()[0] % 2
    ):
        doc["status"] = "failed"
    return doc


def truth(events: Iterable[Event], fixed: bool) -> dict[fp.Key, int]:
    """First purchases as the served raw data holds them: the replayed days read right when
    ``fixed``, every other day as the bug wrote it."""
    out: dict[fp.Key, int] = {}
    for event in events:
        right = fixed and day_of(event.occurred_at_ms) in DAYS
        doc = (current_processing if right else status_bug)(event, 0)
        if (
            doc["event_type"] == "payment"
            and doc.get("status") == "succeeded"
            and "customer_hash" in doc
        ):
            key = (event.merchant_id, int(doc["customer_hash"]))
            out[key] = min(event.occurred_at_ms, out.get(key, event.occurred_at_ms))
    return out


def stored(ctx: Context) -> dict[fp.Key, int]:
    index = fp.index_name(ctx.names, ctx.settings.generation)
    ctx.client.indices.refresh(index=index)
    body = {"size": 10_000, "query": {"match_all": {}}}
    hits = ctx.client.search(index=index, body=body)["hits"]["hits"]
    return {
        (h["_source"][fp.MERCHANT], int(h["_source"][fp.CUSTOMER])): int(
            h["_source"][fp.FIRST_PAID_AT]
        )
        for h in hits
    }


def test_switch_and_rollback_rebuild_first_purchases(ctx: Context) -> None:
    raws = make_events(150, ALL_DAYS, seed=11)
    positions = send(ctx.settings, ctx.names, raws)
    live_write(ctx.client, ctx.settings, ctx.names, raws, positions, processing=status_bug)
    events = as_events(raws)
    catch_up(ctx.client, ctx.settings, ctx.names)
    buggy = truth(events, fixed=False)
    assert stored(ctx) == buggy

    run = reprocess(ctx).apply()
    assert run.phase == runs.SWITCHED, run.report
    fixed = truth(events, fixed=True)
    assert fixed != buggy  # the bug moved or hid first purchases in the replayed days
    assert stored(ctx) == fixed

    Rollback(ctx).apply()
    assert stored(ctx) == buggy
