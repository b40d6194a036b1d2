"""Exchange rates for the load generator's currencies, so ``reportingCurrency`` works on
generated data: the demo (``pulse up --demo``) and the benchmarks load them.

Generated, not fetched: both run offline. One rate per currency of the load generator
(``ingest.loadgen.CURRENCIES``) and UTC day, from ``days_back`` days ago to tomorrow, around
plausible levels with a small deterministic daily drift. They are demo numbers, not market
data; load real ones with ``pulse fx load FILE.csv`` (the same ids: they replace these).
Here, below ``bench`` and ``pulsectl``, because both use them.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from opensearchpy import OpenSearch

from ingest.loadgen import CURRENCIES
from pulse.naming import Names
from storage import fx

HISTORY_DAYS = 56  # the demo's history (`pulse up --demo`'s loadgen --days)
# Late events of a history go up to 3 days further back (ingest.loadgen.Generator.stream).
LATE_MARGIN_DAYS = 4
DAYS_BACK = HISTORY_DAYS + LATE_MARGIN_DAYS
LEVELS = {"EUR": "0.92", "GBP": "0.79", "JPY": "151.3", "INR": "83.4"}  # per USD


def demo_rates(today: date | None = None, days_back: int = DAYS_BACK) -> list[fx.Rate]:
    """A rate per non-USD loadgen currency and day, ``days_back`` days ago through tomorrow."""
    today = today or datetime.now(tz=UTC).date()
    rng = random.Random(today.toordinal())
    rates = []
    for currency in (c for c in CURRENCIES if c != fx.USD):
        level = Decimal(LEVELS[currency])
        for back in range(days_back, -2, -1):
            drift = Decimal(rng.randrange(-150, 151)) / 10_000  # within +-1.5 %
            value = (level * (1 + drift)).quantize(Decimal("0.0001"))
            rates.append(fx.Rate.of(today - timedelta(days=back), currency, value))
    return rates


def load_demo_rates(
    client: OpenSearch, names: Names, history_days: int = HISTORY_DAYS
) -> fx.LoadResult:
    """Rates covering ``history_days`` of loadgen history and its late events, loaded."""
    return fx.load(client, names, demo_rates(days_back=history_days + LATE_MARGIN_DAYS))
