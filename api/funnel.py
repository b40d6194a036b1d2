"""Funnels (DESIGN.md "Cohorts and funnels"): the plan, its validation and the exact count.

A key (``session_id`` or ``customer_id``) *enters* at its first event matching step 1 with
``occurred_at`` in the range; it *reaches* step k when distinct events matching steps 2..k
follow in order, each at or after the previous matched one, all at most ``within`` after the
entering event. This module is pure: it counts over a stream of events sorted by
(key, occurred_at), one key at a time, so memory is one key's events at one instant (as
counts per kind of event), never a whole key's history. ``api.funnel_read`` produces that
stream from the engine; see docs/decisions/0215-funnels-on-opensearch.md.

Why events at the same instant need a matching: "at or after" lets events with equal times
follow each other in any order, and one event may match several steps (``payment`` and
``payment/succeeded``). Within one instant the steps still to reach are assigned distinct
events by augmenting paths (Kuhn's algorithm over kinds of events with multiplicities); across
instants, reaching more steps earlier never hurts later (what remains to match is a suffix of
the steps), so taking the most at each instant is exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from itertools import groupby, pairwise

from api.errors import BadInput
from api.model import Filter
from api.planner import MAX_FILTER_VALUES, MAX_VALUE_LEN, MERCHANT_RE, to_ms
from pulse.clock import DAY_MS, HOUR_MS
from pulse.settings import Settings

MAX_NAME_LEN = 64  # event_type and status are at most 64 characters (the event contract)


class FunnelKey(Enum):
    SESSION = "SESSION"
    CUSTOMER = "CUSTOMER"

    @property
    def field(self) -> str:
        """The raw field that identifies a key."""
        return "session_id" if self is FunnelKey.SESSION else "customer_id"


@dataclass(frozen=True)
class Step:
    """Events with this ``event_type`` and, when not None, this ``status``."""

    event_type: str
    status: str | None = None

    def matches(self, event_type: str, status: str | None) -> bool:
        return event_type == self.event_type and (self.status is None or status == self.status)


@dataclass(frozen=True)
class FunnelPlan:
    """One validated funnel request; times are epoch milliseconds (UTC)."""

    merchant_id: str
    start_ms: int
    end_ms: int
    steps: tuple[Step, ...]
    key: FunnelKey = FunnelKey.SESSION
    within_ms: int = 1_800_000
    filters: tuple[Filter, ...] = ()

    @property
    def read_end_ms(self) -> int:
        """End (exclusive) of the events that can count: an entry at ``end - 1`` ms may be
        followed by steps up to ``within`` later (inclusive)."""
        return self.end_ms + self.within_ms


@dataclass(frozen=True)
class EventRow:
    """What the count needs of one event (the engine's sort values plus two doc values)."""

    key: str
    occurred_ms: int
    event_id: str
    event_type: str
    status: str | None


def build_plan(
    merchant_id: str,
    start: datetime,
    end: datetime,
    steps: Iterable[Step],
    key: FunnelKey,
    within_seconds: int,
    filters: Iterable[Filter],
    settings: Settings,
) -> FunnelPlan:
    """A validated plan; BadInput (BAD_USER_INPUT) for anything the caller must change."""
    plan = FunnelPlan(
        merchant_id=merchant_id,
        start_ms=to_ms(start, "UTC"),
        end_ms=to_ms(end, "UTC"),
        steps=tuple(steps),
        key=key,
        within_ms=within_seconds * 1000,
        filters=tuple(filters),
    )
    validate(plan, settings)
    return plan


def validate(plan: FunnelPlan, settings: Settings) -> None:
    if not MERCHANT_RE.fullmatch(plan.merchant_id):
        raise BadInput("merchantId must be 1-64 characters of [A-Za-z0-9_.-]")
    if plan.end_ms <= plan.start_ms:
        raise BadInput("range.end must be after range.start")
    if plan.end_ms - plan.start_ms > settings.funnel_max_range_days * DAY_MS:
        raise BadInput(
            f"a funnel's range is at most {settings.funnel_max_range_days} days; shorten it"
        )
    if not 1 <= len(plan.steps) <= settings.funnel_max_steps:
        raise BadInput(f"a funnel has 1 to {settings.funnel_max_steps} steps")
    for step in plan.steps:
        if not 1 <= len(step.event_type) <= MAX_NAME_LEN:
            raise BadInput(f"a step's eventType is 1 to {MAX_NAME_LEN} characters")
        if step.status is not None and not 1 <= len(step.status) <= MAX_NAME_LEN:
            raise BadInput(f"a step's status is 1 to {MAX_NAME_LEN} characters, or null")
    if not 0 <= plan.within_ms <= settings.funnel_max_within_s * 1000:
        raise BadInput(f"withinSeconds must be 0 to {settings.funnel_max_within_s}")
    for flt in plan.filters:
        if not flt.values or len(flt.values) > MAX_FILTER_VALUES:
            raise BadInput(f"a filter needs 1 to {MAX_FILTER_VALUES} values")
        if any(len(v) > MAX_VALUE_LEN for v in flt.values):
            raise BadInput(f"filter values are at most {MAX_VALUE_LEN} characters")


def price(plan: FunnelPlan) -> int:
    """Budget points of a funnel (api.budget): steps x hours read. It reads raw events, never
    rollups, so an hour of a funnel step costs like an hour of one metric of a report."""
    hours = -(-(plan.read_end_ms - plan.start_ms) // HOUR_MS)
    return len(plan.steps) * hours


# --- the count ----------------------------------------------------------------------------


def mask_of(steps: tuple[Step, ...], event_type: str, status: str | None) -> int:
    """Bit i set when the event matches step i."""
    mask = 0
    for i, step in enumerate(steps):
        if step.matches(event_type, status):
            mask |= 1 << i
    return mask


class Tally:
    """Keys reaching each step, fed one key's time-ordered instants at a time."""

    def __init__(self, plan: FunnelPlan, max_keys: int) -> None:
        self.plan = plan
        self.max_keys = max_keys
        self.counts = [0] * len(plan.steps)
        self.entered = 0

    def add_key(self, instants: Iterable[tuple[int, dict[int, int]]]) -> None:
        """One key's instants in time order: (occurred_at, {event mask: how many events})."""
        plan = self.plan
        entry: int | None = None
        reached = 0
        for at, kinds in instants:
            if entry is None:
                if at >= plan.end_ms or not any(mask & 1 for mask in kinds):
                    continue
                entry = at
            elif at - entry > plan.within_ms:
                break
            reached = extend(reached, kinds, len(plan.steps))
            if reached == len(plan.steps):
                break
        if entry is None:
            return
        self.entered += 1
        if self.entered > self.max_keys:
            raise BadInput(
                f"more than {self.max_keys} keys enter this funnel (the limit "
                "funnel_max_keys); shorten the range or add filters"
            )
        for i in range(reached):
            self.counts[i] += 1


def extend(reached: int, kinds: dict[int, int], total: int) -> int:
    """Steps reached after one instant: from ``reached``, assign the next steps distinct events
    of ``kinds`` (mask -> count), as many consecutive steps as a matching allows."""
    owner: dict[int, int] = {}  # step -> the kind (mask) of the event it took
    load: dict[int, int] = dict.fromkeys(kinds, 0)
    step = reached
    while step < total and _augment(step, kinds, owner, load, set()):
        step += 1
    return step


def _augment(
    step: int, kinds: dict[int, int], owner: dict[int, int], load: dict[int, int], seen: set[int]
) -> bool:
    """Kuhn's augmenting path for ``step`` over kinds with capacities (event counts)."""
    for kind, capacity in kinds.items():
        if not kind >> step & 1 or kind in seen:
            continue
        seen.add(kind)
        if load[kind] < capacity:
            owner[step] = kind
            load[kind] += 1
            return True
        for other in [s for s, k in owner.items() if k == kind]:
            if _augment(other, kinds, owner, load, seen):
                owner[step] = kind  # ``other`` moved to another kind: its event is free
                return True
    return False


def count(plan: FunnelPlan, rows: Iterable[EventRow], max_keys: int) -> list[int]:
    """Keys reaching each step, from rows sorted by (key, occurred_at, event_id). A row equal
    to the previous one in (key, occurred_at, event_id) is a second copy of one event (two
    backing indices holding it) and counts once."""
    tally = Tally(plan, max_keys)
    for _key, key_rows in groupby(_unique(rows), key=lambda r: r.key):
        tally.add_key(_instants(plan.steps, key_rows))
    return tally.counts


def _unique(rows: Iterable[EventRow]) -> Iterator[EventRow]:
    last: tuple[str, int, str] | None = None
    for row in rows:
        ident = (row.key, row.occurred_ms, row.event_id)
        if ident != last:
            last = ident
            yield row


def _instants(
    steps: tuple[Step, ...], rows: Iterable[EventRow]
) -> Iterator[tuple[int, dict[int, int]]]:
    for at, same in groupby(rows, key=lambda r: r.occurred_ms):
        kinds: dict[int, int] = {}
        for row in same:
            mask = mask_of(steps, row.event_type, row.status)
            if mask:
                kinds[mask] = kinds.get(mask, 0) + 1
        if kinds:
            yield at, kinds


def conversions(counts: list[int]) -> list[float | None]:
    """count / previous count; null for step 1 and after a step no key reached."""
    out: list[float | None] = [None]
    for previous, current in pairwise(counts):
        out.append(current / previous if previous else None)
    return out
