"""api.funnel's count against the brute-force oracle, without an engine (many examples, fast).

The engine tests (tests/api/test_funnel.py) check the same through GraphQL and osmem; here the
stream is sorted in Python exactly as the engine sorts it: (key, occurred_at, event_id).
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from api.funnel import EventRow, FunnelKey, FunnelPlan, Step, conversions, count, extend
from tests.api.funnel_oracle import KINDS, STEPS, OEvent, funnel_counts


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[OEvent], list[tuple[str, str | None]], int, int, int]:
    n = draw(st.integers(1, 14))
    instants = draw(st.sampled_from([2, 12]))  # sometimes all events on 3 instants
    events = []
    for i in range(n):
        kind = draw(st.sampled_from(KINDS))
        events.append(
            OEvent(
                event_id=f"e{i}",
                # Few instants (many ties), and some 1 ms off them (window and range edges).
                occurred_ms=draw(st.integers(0, instants)) * 1000
                + draw(st.sampled_from([0, 0, 0, 0, 1, -1])),
                event_type=kind[0],
                status=kind[1],
                session_id=draw(st.sampled_from(["s0", "s1", "s2", None])),
                customer_id=draw(st.sampled_from(["c0", "c1", None])),
            )
        )
    steps = draw(st.lists(st.sampled_from(STEPS), min_size=1, max_size=4))
    if draw(st.booleans()):  # one event can match two steps: the case needing a matching
        steps = [("payment", None), ("payment", "succeeded"), *steps][: max(2, len(steps))]
    start = draw(st.integers(0, 6)) * 1000
    end = start + draw(st.integers(1, 8)) * 1000
    within = draw(st.sampled_from([0, 1000, 2000, 5000]))
    return events, steps, start, end, within


def _rows(events: list[OEvent], key: FunnelKey, start: int, read_end: int) -> list[EventRow]:
    """What the engine returns: events with the key, in the read window, sorted."""
    rows = [
        EventRow(k, e.occurred_ms, e.event_id, e.event_type, e.status)
        for e in events
        if (k := getattr(e, key.field)) is not None and start <= e.occurred_ms < read_end
    ]
    return sorted(rows, key=lambda r: (r.key, r.occurred_ms, r.event_id))


# One instant holding a succeeded and a failed payment for payment(any) -> payment/succeeded:
# the case a greedy pick gets wrong (it gives the succeeded one to the first step).
TIED = (
    [OEvent("e0", 0, "payment", "succeeded", "s0"), OEvent("e1", 0, "payment", "failed", "s0")],
    [("payment", None), ("payment", "succeeded")], 0, 1000, 0,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(cases(), st.sampled_from(list(FunnelKey)))
@example(TIED, FunnelKey.SESSION)
def test_count_equals_the_oracle(case: tuple, key: FunnelKey) -> None:  # type: ignore[type-arg]
    events, steps, start, end, within = case
    plan = FunnelPlan("m", start, end, tuple(Step(*s) for s in steps), key, within)
    got = count(plan, _rows(events, key, start, plan.read_end_ms), max_keys=100)
    assert got == funnel_counts(events, steps, key.field, start, end, within)


def test_a_second_copy_of_an_event_counts_once() -> None:
    steps = (Step("page_view"), Step("page_view"))
    plan = FunnelPlan("m", 0, 10, steps, FunnelKey.SESSION, 5)
    row = EventRow("s", 1, "e1", "page_view", None)
    assert count(plan, [row, row], max_keys=10) == [1, 0]
    other = EventRow("s", 1, "e2", "page_view", None)
    assert count(plan, [row, row, other], max_keys=10) == [1, 1]


def test_one_instant_assigns_events_to_steps_by_matching() -> None:
    """payment(any) then payment/succeeded at one instant, with a failed and a succeeded
    payment: only failed->any, succeeded->succeeded reaches both (greedy would not)."""
    any_payment, succeeded, failed = 0b011, 0b010, 0b001  # masks: bit i = matches step i
    del any_payment
    kinds = {succeeded | 0b001: 1, failed: 1}  # the succeeded one matches both steps
    assert extend(0, kinds, 2) == 2
    assert extend(0, {0b011: 1}, 2) == 1  # one event cannot be two steps


def test_conversions() -> None:
    assert conversions([10, 5, 0, 0]) == [None, 0.5, 0.0, None]
