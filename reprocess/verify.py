"""Verification: the new generation must hold exactly what was read (per merchant and day);
its differences from the old generation are the bug's effect, reported to the operator.

Bounded at millions of merchants (docs/decisions/0133): one day at a time, what was read is
summed from the run's tally batch documents (``reprocess.tallies``) into one map of the
day's merchants; the new and the old generation are streamed as composite aggregation pages
in merchant order and walked side by side (a merge join), so neither generation is ever
held whole. Only counts, per-day totals and a sample of differences are kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from opensearchpy import OpenSearch

from pulse.naming import Names
from reprocess import generations as gens
from reprocess.plan import Plan
from reprocess.tally import FIGURES, Difference, Row, engine_rows

SAMPLE = 20
ZERO: Row = [0, 0, 0, 0]


class Expected(Protocol):
    """What the replay read: merchant -> row, one day at a time."""

    def day_rows(self, day: str) -> dict[str, Row]: ...


@dataclass
class _Differences:
    """How many (day, merchant) rows differ, and the first ``SAMPLE`` of them."""

    count: int = 0
    sample: list[Difference] = field(default_factory=list)

    def check(self, day: str, merchant: str, a: Row, b: Row) -> None:
        if a != b:
            self.count += 1
            if len(self.sample) < SAMPLE:
                self.sample.append(Difference(day, merchant, a, b))


def side_by_side(
    old: Iterator[tuple[str, Row]], new: Iterator[tuple[str, Row]]
) -> Iterator[tuple[str, Row, Row]]:
    """(merchant, old row, new row) over two streams in ascending merchant order; a side
    without the merchant gives zeros. Refuses streams out of order (a wrong join would
    report differences that are not there, or hide real ones)."""
    a, b = next(old, None), next(new, None)
    last: str | None = None
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            assert a is not None
            merchant, out = a[0], (a[1], ZERO)
            a = next(old, None)
        elif a is None or b[0] < a[0]:
            merchant, out = b[0], (ZERO, b[1])
            b = next(new, None)
        else:
            merchant, out = a[0], (a[1], b[1])
            a, b = next(old, None), next(new, None)
        if last is not None and merchant <= last:
            raise RuntimeError(f"merchant order broken at {merchant!r} after {last!r}")
        last = merchant
        yield merchant, *out


def verify(client: OpenSearch, names: Names, plan: Plan, expected: Expected) -> dict[str, Any]:
    """A JSON report; ``ok`` is True only when every (merchant, day) row matches exactly."""
    gens.refresh(client, names, plan.new_generation, plan.day_dates())
    missing, effect = _Differences(), _Differences()
    per_day: dict[str, dict[str, Row]] = {}
    for day in plan.days:
        read = expected.day_rows(day.day)
        totals = {"expected": _sum(read.values()), "new": list(ZERO), "old": list(ZERO)}
        new = engine_rows(client, day.new_index)
        old = engine_rows(client, ",".join(day.old_indices)) if day.old_indices else iter(())
        for merchant, old_row, new_row in side_by_side(old, new):
            totals["new"] = _add(totals["new"], new_row)
            totals["old"] = _add(totals["old"], old_row)
            missing.check(day.day, merchant, read.pop(merchant, ZERO), new_row)
            effect.check(day.day, merchant, old_row, new_row)
        for merchant in sorted(read):  # read but absent from both generations
            missing.check(day.day, merchant, read[merchant], ZERO)
        per_day[day.day] = totals
    return {
        "ok": missing.count == 0,
        "figures": list(FIGURES),
        "days": per_day,
        "mismatches": missing.count,
        "mismatch_sample": [_row(d) for d in missing.sample],
        "changed_vs_old": effect.count,
        "changed_sample": [_row(d) for d in effect.sample],
    }


def _add(a: Row, b: Row) -> Row:
    return [x + y for x, y in zip(a, b, strict=True)]


def _sum(rows: Any) -> Row:
    total = list(ZERO)
    for row in rows:
        total = _add(total, row)
    return total


def _row(diff: Difference) -> dict[str, Any]:
    return {"day": diff.day, "merchant": diff.merchant, "a": diff.expected, "b": diff.actual}


def describe(report: dict[str, Any]) -> list[str]:
    """Lines for the operator: per-day totals and the sample of changed merchants."""
    lines = [
        f"verify: {'OK' if report['ok'] else 'FAILED'} "
        f"({report['mismatches']} merchant-days differ from what was read)"
    ]
    lines.append(f"  figures: {', '.join(report['figures'])}")
    for day, totals in report["days"].items():
        lines.append(f"  {day}: read {totals['expected']} new {totals['new']} old {totals['old']}")
    lines.append(f"  {report['changed_vs_old']} merchant-days change versus the old generation")
    for row in report["changed_sample"]:
        lines.append(f"    {row['day']} {row['merchant']}: old {row['a']} -> new {row['b']}")
    for row in report["mismatch_sample"]:
        lines.append(f"    MISMATCH {row['day']} {row['merchant']}: read {row['a']} new {row['b']}")
    return lines
