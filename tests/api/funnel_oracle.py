"""A brute-force funnel oracle, written from DESIGN.md's words and nothing of api.funnel.

Per key: it enters at its first event matching step 1 with occurred_at in [start, end); the
oracle then tries every way of picking distinct events for steps 2, 3, ... (each at or after
the previous pick, all at most ``within_ms`` after the entry) and keeps the deepest. Exponential,
so only for the few events per key that property tests generate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class OEvent:
    event_id: str
    occurred_ms: int
    event_type: str
    status: str | None = None
    session_id: str | None = None
    customer_id: str | None = None


Steps = list[tuple[str, str | None]]

# What the property tests draw: event kinds (type, status) and the steps a funnel may name
# (a step without a status matches every payment).
KINDS: Steps = [
    ("page_view", None),
    ("checkout_start", None),
    ("payment", "succeeded"),
    ("payment", "failed"),
]
STEPS: Steps = [*KINDS, ("payment", None)]


def _matches(step: tuple[str, str | None], e: OEvent) -> bool:
    return e.event_type == step[0] and (step[1] is None or e.status == step[1])


def _deepest(
    steps: Steps, events: list[OEvent], depth: int, last: int, used: set[int], limit: int
) -> int:
    if depth == len(steps):
        return depth
    best = depth
    for i, e in enumerate(events):
        if (
            i in used
            or e.occurred_ms < last
            or e.occurred_ms > limit
            or not _matches(steps[depth], e)
        ):
            continue
        used.add(i)
        best = max(best, _deepest(steps, events, depth + 1, e.occurred_ms, used, limit))
        used.discard(i)
        if best == len(steps):
            break
    return best


def funnel_counts(
    events: Iterable[OEvent], steps: Steps, key: str, start: int, end: int, within_ms: int
) -> list[int]:
    """Keys reaching each step (``key``: "session_id" or "customer_id")."""
    by_key: dict[str, list[OEvent]] = defaultdict(list)
    for e in events:
        k = getattr(e, key)
        if k is not None:
            by_key[k].append(e)
    counts = [0] * len(steps)
    for evs in by_key.values():
        firsts = [
            e.occurred_ms for e in evs if start <= e.occurred_ms < end and _matches(steps[0], e)
        ]
        if not firsts:
            continue
        entry = min(firsts)
        limit = entry + within_ms
        entering = [
            i for i, e in enumerate(evs) if e.occurred_ms == entry and _matches(steps[0], e)
        ]
        reached = max(_deepest(steps, evs, 1, entry, {i}, limit) for i in entering)
        for i in range(reached):
            counts[i] += 1
    return counts
