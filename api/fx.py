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
from fractions import Fraction
from math import lcm

from api import sources
from api.cells import Cell, MoneyKey
from api.errors import BadInput, FxRateMissing
from api.model import MISSING, QueryPlan
from api.sources import Cells, Ctx
from storage import fx


@dataclass
class Converter:
    """Converts cells of one plan; rates are read once per request, when first needed."""

    ctx: Ctx
    plan: QueryPlan
    rates: fx.RateTable = field(default_factory=fx.RateTable)
    loaded: set[str] = field(default_factory=set)  # currencies whose rates ``rates`` holds
    factors: dict[MoneyKey, Fraction] = field(default_factory=dict)

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
        amounts = cell.money.amounts if cell.money else {}
        factors = [self.factors[key] for key in amounts]
        # The exact sum over a common denominator in integers: Fraction arithmetic per part
        # cost ~8x more (5.5 against 0.7 ms for a 30-day hourly report's 720 cells).
        den = lcm(*(f.denominator for f in factors)) if factors else 1
        gross = refunds = 0
        for (g, r), factor in zip(amounts.values(), factors, strict=True):
            scale = factor.numerator * (den // factor.denominator)
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
            self.factors[(currency, day)] = self._factor(currency, day)

    def _factor(self, currency: str, day_ms: int) -> Fraction:
        if currency == self.target:
            return Fraction(1)
        try:
            return self.rates.factor(currency, self.target, fx.utc_day(day_ms))
        except fx.RateMissing as missing:
            raise FxRateMissing(
                f"no exchange rate for {missing.currency} on {missing.day.isoformat()} (UTC): "
                f"reportingCurrency {self.target} needs a rate dated within "
                f"{fx.MAX_AGE_DAYS} days before it; load one with pulse fx load"
            ) from None

    def _load(self, currencies: set[str]) -> None:
        """Every rate that can apply to the plan's UTC days, for these currencies (the whole
        range at once: a group's totals and the series then need no second read)."""
        first = fx.utc_day(self.plan.start_ms)
        last = fx.utc_day(self.plan.end_ms - 1)
        self.rates = sources.exchange_rates(self.ctx, currencies, first, last)
        self.loaded = set(currencies)


def half_even(numerator: int, denominator: int) -> int:
    """``round(Fraction(numerator, denominator))`` (half to even) in integers; denominator > 0."""
    quotient, remainder = divmod(numerator, denominator)  # floor: 0 <= remainder < denominator
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient & 1):
        quotient += 1
    return quotient
