"""Realistic traffic for demos, tests and benchmarks.

Merchants are Zipf-distributed (a few big, a long tail); a day has the brief's shape (20% in a
morning hour, 50% in the lunch hour, 30% spread); payments fail ~10% of the time; customers
return; failed payments carry a decline code, a few codes dominating (as acquirers report:
insufficient funds and "do not honor" are about half of all declines); refunds are ~5% of
sales and disputes under 1% of payments. Generation is deterministic for a seed, so tests can
compute their own oracle from the very events they send.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pulse.clock import DAY_MS as DAY_MS
from pulse.clock import HOUR_MS as HOUR_MS
from pulse.clock import now_ms as now_ms
from pulse.clock import parse_instant

MORNING_HOUR = 9
LUNCH_HOUR = 12

CURRENCIES = ("EUR", "USD", "GBP", "JPY", "INR")
# A minority of merchants (every eighth, from m00007: tests with up to seven merchants keep one
# currency each) sell in several currencies: their home one for most payments, two of EUR,
# USD and GBP for the rest.
MULTI_CURRENCY_EVERY, MULTI_CURRENCY_FIRST = 8, 7
ABROAD = ("EUR", "USD", "GBP")
COUNTRIES = ("DE", "FR", "US", "GB", "JP", "IN", "NP", "ES")
METHODS = ("card", "wallet", "bank_transfer", "bnpl")
DEVICES = ("ios", "android", "desktop", "terminal")
CHANNELS = ("web", "app", "pos")
# Decline codes of failed payments and their weights: a skewed head and a long tail.
DECLINE_CODES = (
    "insufficient_funds", "do_not_honor", "generic_decline", "expired_card", "incorrect_cvc",
    "card_velocity_exceeded", "processing_error", "incorrect_number", "fraudulent", "lost_card",
    "stolen_card",
)  # fmt: skip
DECLINE_WEIGHTS = (34, 24, 14, 8, 6, 4, 3, 2, 2, 2, 1)
# Event types and their shares of all events: ~2 refunds per 22 succeeded payments (at 60% of
# a sale's amount: a refund rate near 5%), a dispute for ~0.8% of payments.
EVENT_TYPES = ("page_view", "checkout_start", "payment", "refund", "dispute")
EVENT_TYPE_WEIGHTS = (58, 15, 25, 2, 0.2)


WEEK_MS = 7 * DAY_MS


@dataclass(frozen=True)
class Returning:
    """Customers over weeks, so cohort retention looks like a shop's (``Cohorts``).

    Of a merchant's events, ``new_share`` come from a customer never seen before; the others
    from a customer who joined ``k`` weeks before the event's week (k = 0 is the same week),
    chosen with weight ``decay ** k`` up to ``horizon_weeks``, uniformly among that week's
    joiners. A cohort's chance to come back thus falls with its age, whatever the merchant's
    size: with the defaults about a quarter of a weekly cohort pays again the next week.
    """

    new_share: float = 0.15
    decay: float = 0.6
    horizon_weeks: int = 12


@dataclass
class Cohorts:
    """The customers each (merchant, week) gained so far, for ``Returning`` picks."""

    spec: Returning
    joined: dict[tuple[str, int], list[str]] = field(default_factory=dict)

    def customer(self, rng: random.Random, merchant_id: str, ts_ms: int) -> str:
        week = ts_ms // WEEK_MS
        if rng.random() >= self.spec.new_share:
            ages = range(self.spec.horizon_weeks + 1)
            age = rng.choices(ages, [self.spec.decay**k for k in ages])[0]
            pool = self.joined.get((merchant_id, week - age))
            if pool:
                return rng.choice(pool)
        pool = self.joined.setdefault((merchant_id, week), [])
        pool.append(f"{merchant_id}-w{week}-c{len(pool)}")
        return pool[-1]


@dataclass(frozen=True)
class LoadSpec:
    """What to generate. Times are epoch milliseconds (UTC)."""

    merchants: int = 200
    zipf_s: float = 1.1
    seed: int = 7
    duplicate_rate: float = 0.0  # share of events re-sent with the same event_id
    late_rate: float = 0.0  # share of events whose occurred_at lies hours to days back
    invalid_rate: float = 0.0  # share of messages that break the contract
    customers_per_merchant: int = 500
    returning: Returning | None = None  # customers joining and coming back over weeks


@dataclass
class Generator:
    """Deterministic event source; ``event_at(ts)`` makes one event occurring at ``ts``."""

    spec: LoadSpec
    rng: random.Random = field(init=False)
    _cum: list[float] = field(init=False)
    _seq: Iterator[int] = field(init=False)
    _cohorts: Cohorts | None = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.spec.seed)
        weights = [1 / (k**self.spec.zipf_s) for k in range(1, self.spec.merchants + 1)]
        self._cum = list(itertools.accumulate(weights))
        self._seq = itertools.count()
        self._cohorts = Cohorts(self.spec.returning) if self.spec.returning else None

    def merchant(self) -> int:
        return bisect.bisect_left(self._cum, self.rng.random() * self._cum[-1])

    def _customer(self) -> int:
        """Pareto-distributed: most events come from a few returning customers."""
        return int(self.rng.paretovariate(1.2)) % self.spec.customers_per_merchant

    def _customer_of(self, merchant_id: str, ts_ms: int) -> str:
        if self._cohorts is None:
            return f"{merchant_id}-c{self._customer()}"
        return self._cohorts.customer(self.rng, merchant_id, ts_ms)

    def event_at(self, ts_ms: int) -> dict[str, Any]:
        m = self.merchant()
        rng = self.rng
        mid = f"m{m:05d}"
        n = next(self._seq)
        event: dict[str, Any] = {
            "event_id": f"s{self.spec.seed}-{n:012d}",
            "merchant_id": mid,
            "event_type": rng.choices(EVENT_TYPES, EVENT_TYPE_WEIGHTS)[0],
            "occurred_at": _rfc3339(ts_ms),
            "customer_id": self._customer_of(mid, ts_ms),
            "session_id": f"{mid}-s{rng.randrange(1 << 30):x}",
            "channel": CHANNELS[(m + rng.randrange(2)) % 3],
            "device": rng.choice(DEVICES),
            "country": COUNTRIES[(m + (rng.random() < 0.1)) % len(COUNTRIES)],
            "store_id": f"{mid}-st{rng.randrange(1 + m % 4)}",
        }
        _add_payment_fields(event, rng, m, n)
        return event

    def events(self, count: int, start_ms: int, end_ms: int) -> Iterator[dict[str, Any]]:
        """``count`` events spread over [start, end) with the brief's day shape."""
        for _ in range(count):
            yield self.event_at(day_shaped_time(self.rng, start_ms, end_ms))

    def stream(self, events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Add duplicates and late arrivals to a stream, as real producers do."""
        for event in events:
            if self.rng.random() < self.spec.late_rate:
                back = self.rng.choice((2 * HOUR_MS, 26 * HOUR_MS, 3 * DAY_MS))
                event["occurred_at"] = _rfc3339(parse_instant(event["occurred_at"]) - back)
            yield event
            if self.rng.random() < self.spec.duplicate_rate:
                yield dict(event)


def currency_of(m: int, n: int) -> str:
    """The currency of merchant rank ``m``'s ``n``-th event. Derived from the sequence number,
    not drawn: the random stream (hence every single-currency merchant's events) is the same
    as before multi-currency merchants existed, so benchmarks compare like with like."""
    home = CURRENCIES[m % len(CURRENCIES)]
    if not multi_currency(m) or n % 10 < 6:
        return home
    return [c for c in ABROAD if c != home][n % 2]


def multi_currency(m: int) -> bool:
    """Whether merchant rank ``m`` sells in several currencies (see ``currency_of``)."""
    return m % MULTI_CURRENCY_EVERY == MULTI_CURRENCY_FIRST


def _add_payment_fields(event: dict[str, Any], rng: random.Random, m: int, n: int) -> None:
    kind = event["event_type"]
    if kind not in ("payment", "refund", "dispute"):
        return
    currency = currency_of(m, n)
    amount = round(rng.lognormvariate(3.4, 0.9), 0 if currency == "JPY" else 2)
    event["amount"] = round(amount * 0.6, 2) if kind == "refund" else amount
    event["currency"] = currency
    event["payment_method"] = METHODS[(m + rng.randrange(3)) % len(METHODS)]
    if kind == "payment":
        event["status"] = rng.choices(("succeeded", "failed", "pending"), (88, 10, 2))[0]
        if event["status"] == "failed":
            event["decline_code"] = rng.choices(DECLINE_CODES, DECLINE_WEIGHTS)[0]


def day_shaped_time(rng: random.Random, start_ms: int, end_ms: int) -> int:
    """An instant in [start, end): per day 20% at 09:00, 50% at 12:00, 30% spread (UTC)."""
    days = max(1, (end_ms - start_ms) // DAY_MS)
    day0 = start_ms + rng.randrange(days) * DAY_MS
    r = rng.random()
    if r < 0.2:
        ts = day0 - day0 % DAY_MS + MORNING_HOUR * HOUR_MS + rng.randrange(HOUR_MS)
    elif r < 0.7:
        ts = day0 - day0 % DAY_MS + LUNCH_HOUR * HOUR_MS + rng.randrange(HOUR_MS)
    else:
        ts = day0 + rng.randrange(DAY_MS)
    return min(max(ts, start_ms), end_ms - 1)


def invalid_message(rng: random.Random) -> bytes:
    """One contract-breaking message (for DLQ demos and tests)."""
    return rng.choice(
        (
            b"not json",
            b"[1,2,3]",
            b'{"merchant_id":"m1","event_type":"payment","occurred_at":"2026-01-01T00:00:00Z"}',
            b'{"event_id":"'
            + b"x" * 200
            + b'","merchant_id":"m1","event_type":"a","occurred_at":1}',
            b'{"event_id":"e","merchant_id":"m1","event_type":"a","occurred_at":"yesterday"}',
        )
    )


def _rfc3339(ts_ms: int) -> str:
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def paced(
    make: Callable[[int], dict[str, Any]], rate: float, duration_s: float
) -> Iterator[dict[str, Any]]:
    """Events occurring "now" at ``rate`` per second for ``duration_s`` seconds."""
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < duration_s:
        due = int(elapsed * rate) + 1
        while sent < due:
            yield make(int(time.time() * 1000))
            sent += 1
        time.sleep(min(0.05, max(0.0, (sent / rate) - (time.monotonic() - start))))


def days_ago_ms(days: int) -> int:
    today = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((today - timedelta(days=days)).timestamp() * 1000)


# --- shop sessions: page views -> checkout_start -> payment, for funnels (issue 17) --------
# Separate from ``Generator.event_at`` (independent events) so the funnel's traffic and other
# traffic shapes can change apart. Drop-off per session, roughly a small web shop's: 1-12 page
# views; 35% start a checkout; 80% of those pay; 85% of payments succeed, half of the failed
# ones are retried (70% of retries succeed). Half the visitors are signed in (customer_id on
# every event); the others carry customer_id only from checkout on.

CHECKOUT_RATE = 0.35
PAY_RATE = 0.8
PAY_SUCCESS = 0.85
RETRY_RATE = 0.5


def shop_session(gen: Generator, start_ms: int) -> list[dict[str, Any]]:
    """One session of one merchant starting at ``start_ms``, its events in time order."""
    rng = gen.rng
    m = gen.merchant()
    mid = f"m{m:05d}"
    customer = f"{mid}-c{gen._customer()}"
    signed_in = rng.random() < 0.5
    common = {
        "merchant_id": mid,
        "session_id": f"{mid}-s{rng.randrange(1 << 40):x}",
        "channel": CHANNELS[(m + rng.randrange(2)) % 2],  # web or app: sessions are online
        "device": rng.choice(DEVICES[:3]),
        "country": COUNTRIES[(m + (rng.random() < 0.1)) % len(COUNTRIES)],
    }
    out: list[dict[str, Any]] = []
    t = start_ms

    def add(kind: str, status: str | None = None) -> None:
        nonlocal t
        n = next(gen._seq)
        event: dict[str, Any] = {**common, "event_id": f"s{gen.spec.seed}-{n:012d}"}
        event.update(event_type=kind, occurred_at=_rfc3339(t))
        if signed_in or kind != "page_view":
            event["customer_id"] = customer
        if kind == "payment":
            _add_payment_fields(event, rng, m, n)
            event["status"] = status
        out.append(event)
        t += rng.randint(5_000, 90_000)

    for _ in range(1 + min(int(rng.expovariate(1 / 2.5)), 11)):
        add("page_view")
    if rng.random() < CHECKOUT_RATE:
        add("checkout_start")
        if rng.random() < PAY_RATE:
            paid = rng.random() < PAY_SUCCESS
            add("payment", "succeeded" if paid else "failed")
            if not paid and rng.random() < RETRY_RATE:
                add("payment", "succeeded" if rng.random() < 0.7 else "failed")
    return out


def shop_sessions(
    gen: Generator, events: int, start_ms: int, end_ms: int
) -> Iterator[dict[str, Any]]:
    """Whole sessions starting over [start, end) with the brief's day shape, ``events`` events
    in all (the last session may be cut short)."""
    sent = 0
    while sent < events:
        for event in shop_session(gen, day_shaped_time(gen.rng, start_ms, end_ms)):
            if sent >= events:
                return
            sent += 1
            yield event


class LiveSessions:
    """Live traffic of sessions: ``event_at(now)`` returns the next event that is due (a
    session started earlier) or starts a new session and returns its first event."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self._due: list[tuple[int, int, dict[str, Any]]] = []
        self._order = itertools.count()

    def event_at(self, ts_ms: int) -> dict[str, Any]:
        if self._due and self._due[0][0] <= ts_ms:
            return heapq.heappop(self._due)[2]
        first, *rest = shop_session(self.gen, ts_ms)
        for event in rest:
            heapq.heappush(
                self._due, (parse_instant(event["occurred_at"]), next(self._order), event)
            )
        return first


def with_sessions(
    gen: Generator, share: float, other: Callable[[int], dict[str, Any]]
) -> Callable[[int], dict[str, Any]]:
    """An ``event_at`` sending a ``share`` of its events from live shop sessions."""
    live = LiveSessions(gen)
    return lambda ts: live.event_at(ts) if gen.rng.random() < share else other(ts)
