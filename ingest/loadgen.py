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


@dataclass
class Generator:
    """Deterministic event source; ``event_at(ts)`` makes one event occurring at ``ts``."""

    spec: LoadSpec
    rng: random.Random = field(init=False)
    _cum: list[float] = field(init=False)
    _seq: Iterator[int] = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.spec.seed)
        weights = [1 / (k**self.spec.zipf_s) for k in range(1, self.spec.merchants + 1)]
        self._cum = list(itertools.accumulate(weights))
        self._seq = itertools.count()

    def merchant(self) -> int:
        return bisect.bisect_left(self._cum, self.rng.random() * self._cum[-1])

    def _customer(self) -> int:
        """Pareto-distributed: most events come from a few returning customers."""
        return int(self.rng.paretovariate(1.2)) % self.spec.customers_per_merchant

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
            "customer_id": f"{mid}-c{self._customer()}",
            "session_id": f"{mid}-s{rng.randrange(1 << 30):x}",
            "channel": CHANNELS[(m + rng.randrange(2)) % 3],
            "device": rng.choice(DEVICES),
            "country": COUNTRIES[(m + (rng.random() < 0.1)) % len(COUNTRIES)],
            "store_id": f"{mid}-st{rng.randrange(1 + m % 4)}",
        }
        _add_payment_fields(event, rng, m)
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


def _add_payment_fields(event: dict[str, Any], rng: random.Random, m: int) -> None:
    kind = event["event_type"]
    if kind not in ("payment", "refund", "dispute"):
        return
    currency = CURRENCIES[m % len(CURRENCIES)]
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
