from __future__ import annotations

from collections import Counter

from ingest.contract import Event, parse_message, to_kafka_message
from ingest.loadgen import DAY_MS, HOUR_MS, Generator, LoadSpec

START = 1_795_478_400_000  # 2026-11-24T00:00:00Z


def test_same_seed_same_events() -> None:
    a = list(Generator(LoadSpec(seed=3)).events(200, START, START + DAY_MS))
    b = list(Generator(LoadSpec(seed=3)).events(200, START, START + DAY_MS))
    assert a == b


def test_every_generated_event_honours_the_contract() -> None:
    for event in Generator(LoadSpec(seed=4)).events(2000, START, START + 3 * DAY_MS):
        assert isinstance(parse_message(to_kafka_message(event)), Event)


def test_day_shape_and_zipf_merchants() -> None:
    events = [
        parse_message(to_kafka_message(e))
        for e in Generator(LoadSpec()).events(20000, START, START + DAY_MS)
    ]
    hours = Counter((e.occurred_at_ms - START) // HOUR_MS for e in events if isinstance(e, Event))
    assert 0.45 < hours[12] / 20000 < 0.56  # lunch hour: 50% plus its share of the spread
    assert 0.17 < hours[9] / 20000 < 0.25
    merchants = Counter(e.merchant_id for e in events if isinstance(e, Event))
    top, _ = merchants.most_common(1)[0]
    assert top == "m00000" and merchants[top] > 5 * merchants["m00050"]


def test_failed_payments_near_ten_percent() -> None:
    events = list(Generator(LoadSpec()).events(20000, START, START + DAY_MS))
    payments = [e for e in events if e["event_type"] == "payment"]
    failed = sum(e["status"] == "failed" for e in payments) / len(payments)
    assert 0.07 < failed < 0.13


def test_stream_adds_duplicates_and_late_events() -> None:
    gen = Generator(LoadSpec(duplicate_rate=0.1, late_rate=0.1))
    originals = list(gen.events(1000, START + 5 * DAY_MS, START + 6 * DAY_MS))
    at = {e["event_id"]: e["occurred_at"] for e in originals}
    out = list(gen.stream(iter(originals)))
    ids = Counter(e["event_id"] for e in out)
    assert 60 < sum(c - 1 for c in ids.values()) < 140
    moved = {e["event_id"] for e in out if e["occurred_at"] != at[e["event_id"]]}
    assert 60 < len(moved) < 140
    for event in out:
        parsed = parse_message(to_kafka_message(event))
        assert isinstance(parsed, Event)
        assert parsed.occurred_at_ms <= START + 6 * DAY_MS


def test_a_minority_of_merchants_sells_in_several_currencies() -> None:
    gen = Generator(LoadSpec(merchants=40, zipf_s=0.5, seed=3))
    currencies: dict[str, set[str]] = {}
    for event in gen.events(20_000, 0, 7 * DAY_MS):
        if "currency" in event:
            currencies.setdefault(event["merchant_id"], set()).add(event["currency"])
    several = {m for m, found in currencies.items() if len(found) > 1}
    assert several == {"m00007", "m00015", "m00023", "m00031", "m00039"}, several
    assert len(several) < len(currencies) / 5  # a minority
    assert currencies["m00007"] == {"GBP", "EUR", "USD"}
    assert currencies["m00000"] == {"EUR"}  # the others keep their one currency


def test_returning_customers_make_decaying_weekly_cohorts() -> None:
    """With ``Returning``, a weekly cohort's share coming back falls as it ages, and most of
    a week's paying customers are returning ones once the shop has history."""
    from ingest.loadgen import WEEK_MS, Returning
    from pulse.clock import parse_instant

    spec = LoadSpec(merchants=5, seed=4, returning=Returning())
    gen = Generator(spec)
    start = 2_800 * WEEK_MS  # an epoch-week boundary: weeks of the model and of the check agree
    weeks: dict[str, set[int]] = {}
    for event in gen.events(60_000, start, start + 12 * WEEK_MS):
        if event["merchant_id"] == "m00000" and event.get("status") == "succeeded":
            week = (parse_instant(event["occurred_at"]) - start) // WEEK_MS
            weeks.setdefault(event["customer_id"], set()).add(week)
    first = {c: min(w) for c, w in weeks.items()}
    cohort = [c for c, f in first.items() if f == 4]
    retained = [sum(1 for c in cohort if 4 + k in weeks[c]) / len(cohort) for k in range(6)]
    assert retained[0] == 1.0
    assert 0.08 < retained[1] < 0.5 and retained[1] > retained[3] > retained[5]
    in_week_8 = [c for c, w in weeks.items() if 8 in w]
    returning = sum(1 for c in in_week_8 if first[c] < 8) / len(in_week_8)
    assert 0.2 < returning < 0.8


def test_decline_codes_are_skewed_refunds_and_disputes_are_realistic() -> None:
    events = list(Generator(LoadSpec()).events(40000, START, START + DAY_MS))
    payments = [e for e in events if e["event_type"] == "payment"]
    failed = [e for e in payments if e["status"] == "failed"]
    assert all("decline_code" in e for e in failed)
    assert not any("decline_code" in e for e in payments if e["status"] != "failed")
    codes = Counter(e["decline_code"] for e in failed)
    top_two = sum(n for _, n in codes.most_common(2)) / len(failed)
    assert 0.5 < top_two < 0.65 and len(codes) >= 8  # a dominant head, a long tail
    assert codes.most_common(1)[0][0] == "insufficient_funds"
    gross = sum(e["amount"] for e in payments if e["status"] == "succeeded")
    refunds = sum(e["amount"] for e in events if e["event_type"] == "refund")
    assert 0.03 < refunds / gross < 0.08
    disputes = [e for e in events if e["event_type"] == "dispute"]
    assert 0.004 < len(disputes) / len(payments) < 0.012
    assert all(e["amount"] > 0 and e["currency"] for e in disputes)
