"""Which currency a report's money values are in, and the mixed-currency error.

DESIGN.md "Money never adds different currencies": a money value whose events carry more
than one currency, without ``reportingCurrency`` and not split by a CURRENCY group or filter,
is a BAD_USER_INPUT error naming the currencies and the ways out. The report total's
currencies come from one probe per source (api.dsl.currency_probe, or the day packs' slot
codes); a filter on CURRENCY is applied before the probe, so a filter to one currency never
finds two. Every money value of a report carries the same currency per metric: a bucket
without money is 0 in the report's currency (decision 0200).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from api.cells import Cell, Money
from api.errors import BadInput
from api.model import (
    MISSING,
    MONEY_KINDS,
    MONEY_RATIOS,
    Dimension,
    Metric,
    MoneyKind,
    QueryPlan,
)


@dataclass(frozen=True)
class Currencies:
    """The currency of each money metric's values (None: no currency known)."""

    of: dict[Metric, str | None] = field(default_factory=dict)
    # Grouped by CURRENCY: the group key position holding a group's own currency.
    group_position: int | None = None
    # Grouped by CURRENCY and mixed over the whole report: the totals are null.
    mixed_totals: frozenset[Metric] = frozenset()

    def for_group(self, metric: Metric, group: tuple[str, ...] | None) -> str | None:
        """The currency of ``metric``'s values in a group's series (None for the totals)."""
        if metric not in MONEY_KINDS:
            return None
        if self.group_position is not None and group is not None:
            return code(group[self.group_position])
        return self.of.get(metric)


def code(currency: str) -> str | None:
    """The currency as the API shows it: money without a currency has none (null)."""
    return None if currency == MISSING else currency


def resolve(plan: QueryPlan, total: Cell) -> Currencies:
    """The report's currencies from its total cell's probe; BadInput when money mixes them."""
    position = (
        plan.group_by.index(Dimension.CURRENCY) if Dimension.CURRENCY in plan.group_by else None
    )
    if plan.reporting_currency is not None:
        return Currencies({m: plan.reporting_currency for m in plan.metrics if m in MONEY_KINDS})
    probe = total.money or Money()
    found = {MoneyKind.PAID: probe.paid, MoneyKind.REFUNDED: probe.refunded}
    either = probe.paid | probe.refunded
    of: dict[Metric, str | None] = {}
    mixed: set[Metric] = set()
    for metric in plan.metrics:
        kinds = MONEY_KINDS.get(metric) or MONEY_RATIOS.get(metric)
        if kinds is None:
            continue
        currencies = set().union(*(found[k] for k in kinds))
        if len(currencies) > 1:
            if position is None:
                raise BadInput(mixed_message(metric, currencies))
            mixed.add(metric)
            of[metric] = None
            continue
        if metric not in MONEY_KINDS:
            continue  # a ratio: one currency underneath, none of its own
        # No money of this metric's kind (e.g. no refunds): 0 in the report's one currency.
        chosen = currencies or (either if len(either) == 1 else set())
        of[metric] = code(next(iter(chosen))) if chosen else None
    return Currencies(of, position, frozenset(mixed))


def mixed_message(metric: Metric, currencies: set[str]) -> str:
    names = ", ".join(sorted("(no currency)" if c == MISSING else c for c in currencies))
    return (
        f"{metric.value} would {'divide' if metric in MONEY_RATIOS else 'add'} amounts in "
        f"different currencies ({names}); "
        "pass reportingCurrency to convert them, group by CURRENCY, or filter on one CURRENCY"
    )
