"""A run under live traffic: a producer writes (to Kafka, then as the live indexer would) for
the whole run, and the run still ends, switched, serving exactly the oracle's figures
(issue 21: a replay that read "to the head" never ended while producers kept writing)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from reprocess import runs
from reprocess.pipeline import current_processing
from reprocess.service import Context
from tests.reprocess.conftest import (
    DAYS,
    TODAY,
    live_write,
    make_events,
    oracle,
    reprocess,
    seeded,
    send,
    served,
)

PRODUCER_CAP_S = 150.0  # the producer stops by itself after this, whatever the run does


class Producer(threading.Thread):
    """Bounded live traffic on loopback: chunks of yesterday's events (outside the range)
    with a few late events of the range, each sent to Kafka and then written as the live
    indexer writes (into the generation the registry names), until stopped or capped. The
    live indexer runs the fixed code already (the fix is deployed, then the range rebuilt)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(daemon=True)
        self.ctx = ctx
        self.sent: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + PRODUCER_CAP_S
        seed = 1000
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                seed += 1
                chunk = make_events(20, [TODAY - timedelta(days=1)], seed)
                chunk += make_events(1, DAYS, seed + 500_000)  # late arrivals, own ids
                send(self.ctx.settings, self.ctx.names, chunk)
                c = self.ctx
                live_write(c.client, c.settings, c.names, chunk, current_processing)
                self.sent += chunk
                time.sleep(0.05)
        except BaseException as exc:  # reported by the test, never swallowed
            self.error = exc


def test_run_ends_under_continuous_traffic_and_serves_the_oracle(ctx: Context) -> None:
    events = seeded(ctx, per_day=200)
    producer = Producer(ctx)
    producer.start()
    try:
        while len(producer.sent) < 100 and producer.is_alive():  # traffic flows before the plan
            time.sleep(0.05)
        started = time.monotonic()
        run = reprocess(ctx).apply()
        took = time.monotonic() - started
        during = len(producer.sent)
        assert producer.is_alive() and producer.error is None, producer.error  # still producing
        while len(producer.sent) < during + 60 and producer.is_alive():  # after the switch too
            time.sleep(0.05)
    finally:
        producer.stop.set()
        producer.join(30)
    assert not producer.is_alive() and producer.error is None, producer.error
    assert took < PRODUCER_CAP_S / 2  # ended on its own, long before the traffic did
    assert run.phase == runs.SWITCHED, run.report
    assert run.report["verify"]["ok"], run.report["verify"]
    assert len(producer.sent) > during  # traffic went on after the switch
    expected = oracle(events + producer.sent, DAYS)  # late arrivals before/after the switch
    assert served(ctx.client, ctx.names, DAYS).days == expected.days
