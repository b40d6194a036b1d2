"""reportingCurrency: money converted per currency and per UTC day before it is added.

With a converting plan the sources return each cell's money as [gross, refunds] milli per
(currency, UTC day) (api.dsl; the day packs hold it per hour). Here every part is multiplied
by its day's exact factor (storage.fx: ``per_usd(target) / per_usd(currency)``, the latest
rate on or before that UTC date, at most 7 days old) and the parts are added as fractions;
the cell's gross and refunds become that sum rounded once to 1/1000 of the target currency,
half to even (docs/api.md "Currencies"). Converting a per-day subtotal equals converting each
event and adding (conversion is linear, the arithmetic exact), so raw and rollups agree to
the last thousandth wherever the split falls. A missing rate is FX_RATE_MISSING naming the
currency and date; money without a currency cannot be converted (BAD_USER_INPUT).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from math import lcm

from api import sources
from api.cells import Cell, MoneyKey
from api.errors import BadInput, FxRateMissing
from api.model import MISSING, QueryPlan
from api.sources import Cells, Ctx
from pulse.lru import LockedLRU
from storage import fx

TableKey = tuple[str, frozenset[str], date, date]  # version, currencies, first and last day


@dataclass(frozen=True)
class Rates:
    """A rate table and the factors worked out from it so far, (currency, target, UTC day
    start) -> factor: a remembered table's factors are computed once, not per request (~1 ms
    for a 30-day report in four currencies). Shared by threads: entries are only added, and
    a factor is a function of the table, so two threads adding one add the same value."""

    table: fx.RateTable
    factors: dict[tuple[str, str, int], Fraction] = field(default_factory=dict)


class RateTables:
    """Rate tables remembered by the stored rates' version (decision 0260).

    ``pulse fx load`` (storage.fx.load, the only writer of rates) ends by writing a new random
    version once its rates are searchable, and source resolution reads that version in its
    rollup state ``mget`` (``ResolvedPlan.versions.rates``). A table read under version V
    holds the rates stored at V or later, and a request that sees V started after they were
    searchable, so it never gets rates older than its own read would: the request after a
    load sees a new version and reads again. Without a version (no rates index, or rates
    stored before versions were written) every request reads. Tables are never changed once
    stored (their factors only grow); a few dozen (currency sets x date ranges) cover a day's
    dashboards."""

    def __init__(self, size: int = 64) -> None:
        self._tables: LockedLRU[TableKey, Rates] = LockedLRU(size)

    @property
    def hits(self) -> int:
        return self._tables.hits

    @property
    def misses(self) -> int:
        return self._tables.misses

    def get(self, key: TableKey) -> Rates | None:
        return self._tables.get(key)

    def keep(self, key: TableKey, rates: Rates) -> None:
        self._tables.put(key, rates)

    def clear(self) -> None:
        self._tables.clear()


RATE_TABLES = RateTables()


@dataclass
class Converter:
    """Converts cells of one plan; rates are read once per request, when first needed, or
    taken from ``RATE_TABLES`` when ``version`` (the rates' version read with the rollup
    state) is known."""

    ctx: Ctx
    plan: QueryPlan
    version: str | None = None
    rates: Rates = field(default_factory=lambda: Rates(fx.RateTable()))
    loaded: set[str] = field(default_factory=set)  # currencies whose rates ``rates`` holds
    # Each (currency, day)'s factor as (numerator, denominator): read per cell part, where a
    # Fraction's properties cost more than a tuple's items.
    factors: dict[MoneyKey, tuple[int, int]] = field(default_factory=dict)

    @property
    def target(self) -> str:
        assert self.plan.reporting_currency is not None
        return self.plan.reporting_currency

    def convert(self, cells: Cells) -> None:
        """Replace every cell's gross and refunds with its converted money: by a converted
        copy in ``cells``, as the cells may be shared with remembered ones (api.cells)."""
        keys = {key for cell in cells.values() if cell.money for key in cell.money.amounts}
        self._prepare(keys)
        for key, cell in cells.items():
            gross, refunds = self._converted(cell)
            if gross != cell.gross or refunds != cell.refunds:
                cells[key] = cell.with_amounts(gross, refunds)

    def _converted(self, cell: Cell) -> tuple[int, int]:
        amounts = cell.money.amounts if cell.money else None
        if not amounts:  # no money: 0 in any currency
            return 0, 0
        if len(amounts) == 1:  # most cells: one currency on one day, one factor
            ((key, (g, r)),) = amounts.items()
            num, den = self.factors[key]
            return half_even(g * num, den), half_even(r * num, den)
        factors = [self.factors[key] for key in amounts]
        # The exact sum over a common denominator in integers: Fraction arithmetic per part
        # cost ~8x more (5.5 against 0.7 ms for a 30-day hourly report's 720 cells).
        den = lcm(*(d for _, d in factors))
        gross = refunds = 0
        for (g, r), (num, d) in zip(amounts.values(), factors, strict=True):
            scale = num * (den // d)
            gross += g * scale
            refunds += r * scale
        return half_even(gross, den), half_even(refunds, den)

    def _prepare(self, keys: set[MoneyKey]) -> None:
        todo = {k for k in keys if k not in self.factors}
        if not todo:
            return
        if any(currency == MISSING for currency, _ in todo):
            raise BadInput(
                "some amounts carry no currency and cannot be converted; filter CURRENCY on "
                "__none__ with exclude: true, or drop reportingCurrency"
            )
        target = self.target
        wanted = {c for c, _ in todo if c != target}
        if wanted - self.loaded:
            self._load(wanted | {target})
        for currency, day in todo:
            factor = self._factor(currency, day)
            self.factors[(currency, day)] = (factor.numerator, factor.denominator)

    def _factor(self, currency: str, day_ms: int) -> Fraction:
        if currency == self.target:
            return Fraction(1)
        key = (currency, self.target, day_ms)
        known = self.rates.factors.get(key)
        if known is not None:
            return known
        try:
            factor = self.rates.table.factor(currency, self.target, fx.utc_day(day_ms))
        except fx.RateMissing as missing:
            raise FxRateMissing(
                f"no exchange rate for {missing.currency} on {missing.day.isoformat()} (UTC): "
                f"reportingCurrency {self.target} needs a rate dated within "
                f"{fx.MAX_AGE_DAYS} days before it; load one with pulse fx load"
            ) from None
        self.rates.factors[key] = factor
        return factor

    def _load(self, currencies: set[str]) -> None:
        """Every rate that can apply to the plan's UTC days, for these currencies (the whole
        range at once: a group's totals and the series then need no second read)."""
        first = fx.utc_day(self.plan.start_ms)
        last = fx.utc_day(self.plan.end_ms - 1)
        key = (self.version, frozenset(currencies), first, last) if self.version else None
        found = RATE_TABLES.get(key) if key is not None else None
        if found is None:
            found = Rates(sources.exchange_rates(self.ctx, currencies, first, last))
            if key is not None:
                RATE_TABLES.keep(key, found)
        self.rates = found
        self.loaded = set(currencies)


def half_even(numerator: int, denominator: int) -> int:
    """``round(Fraction(numerator, denominator))`` (half to even) in integers; denominator > 0."""
    quotient, remainder = divmod(numerator, denominator)  # floor: 0 <= remainder < denominator
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient & 1):
        quotient += 1
    return quotient
