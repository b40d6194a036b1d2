"""Verification: the new generation must hold exactly what was read (per merchant and day);
its differences from the old generation are the bug's effect, reported to the operator."""

from __future__ import annotations

from typing import Any

from opensearchpy import OpenSearch

from pulse.naming import Names
from reprocess import generations as gens
from reprocess.plan import Plan
from reprocess.tally import FIGURES, Difference, Tally, differences, engine_tally

SAMPLE = 20


def new_generation_tally(client: OpenSearch, names: Names, plan: Plan) -> Tally:
    gens.refresh(client, names, plan.new_generation, plan.day_dates())
    out = Tally()
    for day in plan.days:
        out.merge(engine_tally(client, day.new_index, day.day))
    return out


def old_generation_tally(client: OpenSearch, plan: Plan) -> Tally:
    out = Tally()
    for day in plan.days:
        if day.old_indices:
            out.merge(engine_tally(client, ",".join(day.old_indices), day.day))
    return out


def verify(client: OpenSearch, names: Names, plan: Plan, expected: Tally) -> dict[str, Any]:
    """A JSON report; ``ok`` is True only when every (merchant, day) row matches exactly."""
    new = new_generation_tally(client, names, plan)
    old = old_generation_tally(client, plan)
    days = [d.day for d in plan.days]
    missing = differences(expected, new, days)
    effect = differences(old, new, days)
    per_day = {
        d: {"expected": expected.day_total(d), "new": new.day_total(d), "old": old.day_total(d)}
        for d in days
    }
    return {
        "ok": not missing,
        "figures": list(FIGURES),
        "days": per_day,
        "mismatches": len(missing),
        "mismatch_sample": [_row(d) for d in missing[:SAMPLE]],
        "changed_vs_old": len(effect),
        "changed_sample": [_row(d) for d in effect[:SAMPLE]],
    }


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
    return lines
