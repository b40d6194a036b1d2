"""Shop sessions of the load generator (ingest.loadgen): what the demo's funnel is made of."""

from __future__ import annotations

from collections import Counter, defaultdict

from ingest.contract import validate
from ingest.loadgen import (
    DAY_MS,
    Generator,
    LiveSessions,
    LoadSpec,
    shop_session,
    shop_sessions,
    with_sessions,
)
from pulse.clock import parse_instant


def test_sessions_are_valid_ordered_and_drop_off_like_a_shop() -> None:
    gen = Generator(LoadSpec(merchants=20, seed=4))
    events = list(shop_sessions(gen, 20_000, 0, 7 * DAY_MS))
    assert len(events) == 20_000
    by_session: dict[str, list[int]] = defaultdict(list)
    kinds: Counter[str] = Counter()
    for raw in events:
        event = validate(dict(raw))
        assert event.session_id is not None and event.session_id.startswith(event.merchant_id)
        by_session[event.session_id].append(event.occurred_at_ms)
        kinds[f"{event.event_type}/{event.status}"] += 1
    assert all(times == sorted(times) for times in by_session.values())
    sessions = len(by_session)
    checkouts = kinds["checkout_start/None"]
    paid = kinds["payment/succeeded"]
    assert 0.25 < checkouts / sessions < 0.45  # CHECKOUT_RATE 0.35
    assert 0.6 < paid / checkouts < 0.9  # PAY_RATE x success, with retries
    assert kinds["payment/failed"] > 0
    # The same seed gives the same events (tests compute oracles from them).
    again = list(shop_sessions(Generator(LoadSpec(merchants=20, seed=4)), 20_000, 0, 7 * DAY_MS))
    assert again == events


def test_a_session_of_one_merchant_and_customer() -> None:
    session = shop_session(Generator(LoadSpec(merchants=3, seed=1)), 1_000_000)
    assert len({e["merchant_id"] for e in session}) == 1
    assert len({e["session_id"] for e in session}) == 1
    assert len({e.get("customer_id") for e in session if e["event_type"] != "page_view"}) <= 1


def test_live_sessions_send_each_event_when_it_is_due() -> None:
    live = LiveSessions(Generator(LoadSpec(merchants=2, seed=9)))
    sent = [live.event_at(now) for now in range(0, 3_600_000, 2_000)]
    for event in sent:
        assert parse_instant(event["occurred_at"]) <= 3_600_000
    per_session: dict[str, list[int]] = defaultdict(list)
    for event in sent:
        per_session[event["session_id"]].append(parse_instant(event["occurred_at"]))
    assert all(times == sorted(times) for times in per_session.values())
    assert any(len(times) > 2 for times in per_session.values())  # sessions span several calls


def test_with_sessions_mixes_by_share() -> None:
    gen = Generator(LoadSpec(merchants=2, seed=9))
    other: list[int] = []

    def independent(ts: int) -> dict[str, object]:
        other.append(ts)
        return gen.event_at(ts)

    mixed = with_sessions(gen, 0.3, independent)
    sent = [mixed(t) for t in range(0, 2_000_000, 1000)]
    assert 0.6 < len(other) / len(sent) < 0.8
    assert len(sent) == 2000
