"""Funnels through a reprocessing switch: before it they count what the buggy processing
indexed, after it what the events say, and while the generation swaps every answer is the
complete old or the complete new one (the read pages inside one point in time)."""

from __future__ import annotations

import threading
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from ingest.contract import Event, parse_message, to_kafka_message
from ingest.loadgen import Generator, LoadSpec, shop_sessions
from pulse.keystore import create_key
from reprocess import runs
from reprocess.generations import DAY_MS, day_start_ms
from reprocess.pipeline import current_processing
from reprocess.service import Context
from tests.api.conftest import post
from tests.api.funnel_oracle import OEvent, funnel_counts
from tests.api.helpers import iso
from tests.reprocess.conftest import ALL, DAYS, live_write, reprocess, send

QUERY = """
query($m: ID!, $s: DateTime!, $e: DateTime!, $steps: [FunnelStepInput!]!, $by: FunnelKey) {
  funnel(merchantId: $m, range: {start: $s, end: $e}, steps: $steps, by: $by) {
    steps { count }
  }
}
"""
STEPS = [("page_view", None), ("checkout_start", None), ("payment", "succeeded")]


def lost_session(event: Event, ingested_at_ms: int) -> dict[str, Any]:
    """The deliberate bug: checkout_start events indexed without their session_id."""
    doc = current_processing(event, ingested_at_ms)
    if doc["event_type"] == "checkout_start":
        doc.pop("session_id", None)
    return doc


def _oracle(events: list[Event], by: str, start: int, end: int, fixed_from: int) -> list[int]:
    """Counts over the events as served: the bug still in those before ``fixed_from``."""
    seen = [
        OEvent(
            e.event_id, e.occurred_at_ms, e.event_type, e.status,
            None if e.occurred_at_ms < fixed_from and e.event_type == "checkout_start"
            else e.session_id,
            e.customer_id,
        )
        for e in events
    ]  # fmt: skip
    return funnel_counts(seen, STEPS, by, start, end, 1_800_000)


def test_funnels_before_during_and_after_a_switch(ctx: Context) -> None:
    gen = Generator(LoadSpec(merchants=2, seed=17))
    raws: list[dict[str, Any]] = []
    for day in ALL:
        raws += shop_sessions(gen, 150, day_start_ms(day), day_start_ms(day) + DAY_MS)
    live_write(
        ctx.client, ctx.settings, ctx.names, raws, send(ctx.settings, ctx.names, raws),
        processing=lost_session,
    )  # fmt: skip
    events = [e for e in (parse_message(to_kafka_message(r)) for r in raws) if isinstance(e, Event)]
    merchant = "m00000"
    mine = [e for e in events if e.merchant_id == merchant]
    # Paged 40 events at a time: each answer spans many engine requests.
    app = create_app(ctx.settings.model_copy(update={"funnel_page_size": 40}), ctx.client)
    http = TestClient(app)
    key = create_key(ctx.client, ctx.names, merchant, admin=False)[0]
    start, end = day_start_ms(ALL[0]), day_start_ms(DAYS[-1]) + DAY_MS

    def ask(by: str) -> list[int]:
        variables = {
            "m": merchant, "s": iso(start), "e": iso(end), "by": by,
            "steps": [{"eventType": t, "status": s} for t, s in STEPS],
        }  # fmt: skip
        body = post(http, key, QUERY, variables)
        assert "errors" not in body, body
        return [s["count"] for s in body["data"]["funnel"]["steps"]]

    old = _oracle(mine, "session_id", start, end, fixed_from=end)
    new = _oracle(mine, "session_id", start, end, fixed_from=day_start_ms(DAYS[0]))  # not ALL[0]
    assert old[1] < new[1]  # the bug is visible in the funnel
    assert ask("SESSION") == old
    assert ask("CUSTOMER") == _oracle(mine, "customer_id", start, end, fixed_from=0)

    asked: list[list[int]] = []
    done = threading.Event()

    def asker() -> None:
        while not done.is_set() or len(asked) < 3:
            asked.append(ask("SESSION"))

    thread = threading.Thread(target=asker)
    thread.start()
    try:
        run = reprocess(ctx).apply()
    finally:
        done.set()
        thread.join(120)
    assert run.phase == runs.SWITCHED, run.report
    assert ask("SESSION") == new
    assert all(answer in (old, new) for answer in asked), asked
