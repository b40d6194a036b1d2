"""Reprocessing as merchants see it: GraphQL answers (rollups and raw paths) before the fix,
continuously during the switch, after it, and after a rollback — with the rollup job idle
during the switch, and with it running all along (the hold of docs/decisions/0046)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from reprocess import runs
from reprocess.service import Context, Rollback
from rollups.job import catch_up
from tests.reprocess.conftest import DAYS, reprocess, seeded
from tests.reprocess.graphql import (
    Answer,
    Api,
    as_events,
    check_all,
    misread,
    queries,
    sources,
    values,
)

ASKED = 6  # queries asked over and over during the switch (the first merchants' shapes)


def test_graphql_answers_fixed_switched_atomically_and_rolled_back(ctx: Context) -> None:
    events = as_events(seeded(ctx, per_day=200))
    merchants = sorted({e.merchant_id for e in events})
    api = Api.over(ctx, merchants)
    catch_up(ctx.client, ctx.settings, ctx.names)  # the rollup job ran over the buggy data
    qs = queries(merchants, DAYS)
    old = api.answers(qs)
    check_all(old, qs, misread(events))  # wrong, exactly as the buggy processing made it
    assert "rollups" in sources(old)
    gross = [_total(auto, "GROSS_SALES") for auto, _ in old]
    assert any(g for g in gross)  # the misread amounts are not all zero...

    during, run = _asked_during(api, qs[:ASKED], lambda: reprocess(ctx).apply())
    assert run.phase == runs.SWITCHED, run.report
    new = api.answers(qs)  # fixed: the switched days are served from raw until rolled up
    check_all(new, qs, events)
    assert [_total(auto, "GROSS_SALES") for auto, _ in new] != gross  # ...and now right
    _old_or_new(during, old[:ASKED], new[:ASKED])

    catch_up(ctx.client, ctx.settings, ctx.names)  # the scheduler's next run
    rolled = api.answers(qs)
    check_all(rolled, qs, events)  # rollups included: rebuilt by the switch
    assert "rollups" in sources(rolled)

    Rollback(ctx).apply()
    back = api.answers(qs)
    assert [(values(a), values(r)) for a, r in back] == [(values(a), values(r)) for a, r in old]


def test_answers_stay_old_or_new_while_the_rollup_job_runs(ctx: Context) -> None:
    events = as_events(seeded(ctx, per_day=150))
    merchants = sorted({e.merchant_id for e in events})
    api = Api.over(ctx, merchants)
    catch_up(ctx.client, ctx.settings, ctx.names)
    qs = queries(merchants, DAYS)[:ASKED]
    old = api.answers(qs)
    check_all(old, qs, misread(events))
    with _rollup_job_running(ctx) as job_runs:
        during, run = _asked_during(api, qs, lambda: reprocess(ctx).apply())
        assert run.phase == runs.SWITCHED, run.report
        new = api.answers(qs)
        back_during, _ = _asked_during(api, qs, lambda: Rollback(ctx).apply())
    assert job_runs[0] >= 3, job_runs  # the job really ran through both swaps
    check_all(new, qs, events)
    _old_or_new(during, old, new)
    _old_or_new(back_during, new, old)
    back = api.answers(qs)
    assert [(values(a), values(r)) for a, r in back] == [(values(a), values(r)) for a, r in old]


@contextlib.contextmanager
def _rollup_job_running(ctx: Context) -> Iterator[list[int]]:
    """The scheduler's job, run back to back in a thread; yields [runs completed so far]."""
    done = threading.Event()
    count = [0]
    failures: list[BaseException] = []

    def loop() -> None:
        while not done.is_set():
            try:
                catch_up(ctx.client, ctx.settings, ctx.names)
            except BaseException as exc:  # surfaced below: a dead job would prove nothing
                failures.append(exc)
                return
            count[0] += 1
            time.sleep(0.05)

    job = threading.Thread(target=loop)
    job.start()
    try:
        yield count
    finally:
        done.set()
        job.join(120)
    assert not failures, failures
    assert not job.is_alive()


def _asked_during(
    api: Api, qs: list[dict[str, Any]], action: Any
) -> tuple[list[list[tuple[Answer, Answer]]], runs.Run]:
    """Run ``action`` while another thread asks ``qs`` over and over (at least 3 rounds)."""
    asked: list[list[tuple[Answer, Answer]]] = []
    done = threading.Event()

    def ask() -> None:
        while not done.is_set() or len(asked) < 3:
            asked.append(api.answers(qs))

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        run = action()
    finally:
        done.set()
        asker.join(120)
    assert not asker.is_alive()
    return asked, run


def _old_or_new(
    asked: list[list[tuple[Answer, Answer]]],
    old: list[tuple[Answer, Answer]],
    new: list[tuple[Answer, Answer]],
) -> None:
    """Each answer is the complete old or the complete new one: never a day missing, doubled
    or half switched (both paths; which source served it may differ, the numbers may not)."""
    kinds: set[str] = set()
    for round_ in asked:
        for i, pair in enumerate(round_):
            for path in (0, 1):
                got = values(pair[path])
                assert got in (values(old[i][path]), values(new[i][path])), (i, path)
                kinds.add("old" if got == values(old[i][path]) else "new")
    assert kinds == {"old", "new"}  # the asking spanned the switch


def _total(answer: Answer, metric: str) -> float | None:
    value: float | None = next(t["value"] for t in answer["totals"] if t["metric"] == metric)
    return value
