"""The rollup job's published progress, and the read-side rules the API plans with.

The watermark W (epoch ms, ingest time) lives in the state index (``Names.state_index``),
document ``rollups.state``: every raw event with ``ingested_at <= W`` that occurred in an hour
closed at W (hour end <= W) is reflected in the rollup documents (storage.rollup_schema).
Hours still open at W have no complete rollups yet (they are never servable). W is the slowest
shard's watermark (rollups.shards, docs/decisions/0221): each shard's W moves only after its
buckets are written, and ``publish`` moves the served W forward only, by compare-and-set. W
lags the run's start by the visibility margin (docs/decisions/0030), so late-visible documents
are never skipped.

Read side (used by the API; all times epoch milliseconds, UTC):

- ``watermark(client, names) -> int | None``: W, or None before the first completed run.
- ``servable(client, settings, names, merchant_id, start_ms, end_ms, now_ms).hours``: the UTC
  hour starts h with ``start <= h`` and ``h + 1h <= end`` whose rollups are complete: the hour
  is closed (``h + 1h <= min(W, now)``) and no raw event of the merchant occurring in it has
  ``ingested_at > W`` (its rollup is newer than its last change). Hours without any data are
  servable (zero). Empty when there is no W, or it belongs to another generation or to a
  job of an older ``storage.rollup_schema.SCHEMA_VERSION`` (whose documents lack what readers need).
  Its two halves, for a caller that overlaps the second with other reads (the API):
  ``candidates`` (closed, not held; one ``mget``) and ``dirty_hours`` (one raw search). Their
  rules are pure functions (``candidate_hours``, ``unsettled``, ``rolled_up_through``) and
  the raw searches' bodies live in ``storage.late_events``, so the API's source resolution
  (api.resolve) applies the same rules to reads it formats and runs itself.
- ``freshness(client, names, merchant_id) -> (ingested_through, rolled_up_through)``:
  ``ingested_through`` = the newest ``ingested_at`` of the merchant's raw events (None if it
  has none); ``rolled_up_through`` = the end of the latest closed hour h such that every
  hour <= h is complete for the merchant, i.e. ``min(hour_start(W), hour_start(E))`` where E
  is the earliest ``occurred_at`` of the merchant's events ingested after W (None without W).

Holds (``hold``/``release``, document ``rollups.holds``): an event-time range whose rollups
must not be served, whatever W says: ``pulse reprocess`` holds its range before it swaps the raw
indices and releases it once the range's rollups are rebuilt, so a report reads that range
from raw only — wholly old before the swap, wholly new after (docs/decisions/0046). Held hours
are never servable and cap ``rolled_up_through``.

Raw events are read through ``Names.events_alias``, the same indices the API serves raw from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from pulse.naming import Names
from pulse.settings import Settings
from storage import arrivals, late_events, served
from storage.arrivals import DAY_MS
from storage.rollup_schema import HOUR_MS, SCHEMA_VERSION, hour_start
from storage.templates import ensure_index

STATE_ID = "rollups.state"
HOLDS_ID = "rollups.holds"
# Every rollups bookkeeping document (lease, state, backfill progress) keeps its fields under
# one "rollups" object, so the shared state index never sees clashing field names.
STATE_MAPPING: dict[str, Any] = {
    "properties": {
        "rollups": {
            "type": "object",
            "properties": {
                "owner": {"type": "keyword"},
                "expires_at": {"type": "long"},
                "term": {"type": "long"},
                # shard documents and worker presence (rollups.shards)
                "epoch": {"type": "long"},
                "taken_at": {"type": "long"},
                "shard": {"type": "long"},
                "shards": {"type": "long"},
                "kind": {"type": "keyword"},
                # rollups.scan: a window's changed pairs of one shard, read whole
                "pair_list": {"type": "object", "enabled": False},
                "generation": {"type": "keyword"},
                "schema": {"type": "long"},
                "watermark": {"type": "long"},
                "updated_at": {"type": "long"},
                "pairs": {"type": "long"},
                "buckets": {"type": "long"},
                "start": {"type": "long"},
                "end": {"type": "long"},
                "next_hour": {"type": "long"},
                "done": {"type": "boolean"},
                # key -> {"start", "end", "reason"}: read whole, never searched
                "holds": {"type": "object", "enabled": False},
            },
        }
    }
}


class StateConflict(RuntimeError):
    """The state document changed under us: another writer moved the watermark."""


@dataclass(frozen=True)
class State:
    generation: str
    watermark: int | None
    cas: tuple[int, int] | None  # (seq_no, primary_term); None when the document is absent
    schema: int = SCHEMA_VERSION  # storage.rollup_schema.SCHEMA_VERSION of the job that wrote it

    def serves(self, generation: str) -> bool:
        """Whether documents up to W are readable for ``generation`` by this code's rules."""
        return (
            self.watermark is not None
            and self.generation == generation
            and self.schema == SCHEMA_VERSION
        )


def ensure_state_index(client: OpenSearch, names: Names) -> None:
    """Create the shared state index if missing and add the rollups fields (additive)."""
    ensure_index(client, names.state_index)
    client.indices.put_mapping(index=names.state_index, body=STATE_MAPPING)


def load(client: OpenSearch, names: Names) -> State | None:
    try:
        doc = client.get(index=names.state_index, id=STATE_ID)
    except NotFoundError:
        return None
    return _state(doc)


def _state(doc: dict[str, Any]) -> State:
    src = doc["_source"].get("rollups", {})
    wm = src.get("watermark")
    cas = (int(doc["_seq_no"]), int(doc["_primary_term"]))
    generation = str(src.get("generation", ""))
    # A state without "schema" was written by the first job version (no total documents).
    return State(generation, None if wm is None else int(wm), cas, int(src.get("schema", 1)))


@dataclass(frozen=True)
class Hold:
    """An event-time range [start, end) whose rollups are not served (module doc)."""

    key: str
    start: int
    end: int
    reason: str = ""

    def covers(self, hour: int) -> bool:
        return hour < self.end and hour + HOUR_MS > self.start


@dataclass(frozen=True)
class View:
    """What a reader plans with, read in one round trip: the state and the holds."""

    state: State | None
    holds: tuple[Hold, ...] = ()

    def watermark(self) -> int | None:
        state = self.state
        return state.watermark if state and state.schema == SCHEMA_VERSION else None

    def held(self, hours: set[int]) -> set[int]:
        if not self.holds:  # the usual case: not a pass over every hour of a report
            return set()
        return {h for h in hours if any(hold.covers(h) for hold in self.holds)}


def view(client: OpenSearch, names: Names) -> View:
    """The state and the holds (one ``mget``; a missing index reads as no state, no holds)."""
    return view_and_bounds(client, names, ())[0]


def view_and_bounds(
    client: OpenSearch, names: Names, days: Iterable[int]
) -> tuple[View, dict[int, int]]:
    """``view`` and the arrival bounds of ``days`` (``arrivals.bounds``), in one ``mget``:
    all are documents of the state index. The bounds are read with the state, not after it:
    a bound is raised before the documents it covers are written (decision 0048), so what
    this misses arrived after the state was read (decision 0256)."""
    seen, bounds, _ = view_bounds_and(client, names, days, ())
    return seen, bounds


def view_bounds_and(
    client: OpenSearch, names: Names, days: Iterable[int], docs: Sequence[dict[str, Any]]
) -> tuple[View, dict[int, int], list[dict[str, Any]]]:
    """``view_and_bounds``, and the documents ``docs`` (``mget`` entries naming their
    ``_index``) answered as ``mget`` answers them, in order, in the same round trip: a
    reader's other small reads (versions of what it reads next, decision 0260) cost no trip
    of their own. A document of an index that does not exist comes back with its error."""
    wanted = sorted(set(days))
    ids = [STATE_ID, HOLDS_ID, *(arrivals.doc_id(day) for day in wanted)]
    index = names.state_index
    entries = [*({"_index": index, "_id": i} for i in ids), *docs]
    try:
        found = client.mget(body={"docs": entries})
    except NotFoundError:
        return View(None), {}, [{"_index": d.get("_index"), "_id": d.get("_id")} for d in docs]
    answers = found.get("docs", [])
    states, others = answers[: len(ids)], answers[len(ids) :]
    return _view_of(states[:2]), arrivals.bounds_of(wanted, states[2:]), others


def _view_of(docs: list[dict[str, Any]]) -> View:
    found = {d["_id"]: d for d in docs if d.get("found")}
    state = _state(found[STATE_ID]) if STATE_ID in found else None
    holds = _holds(found[HOLDS_ID]) if HOLDS_ID in found else {}
    return View(state, tuple(holds.values()))


def _holds(doc: dict[str, Any]) -> dict[str, Hold]:
    raw = (doc["_source"].get("rollups") or {}).get("holds") or {}
    return {
        key: Hold(key, int(h["start"]), int(h["end"]), str(h.get("reason", "")))
        for key, h in raw.items()
    }


def holds(client: OpenSearch, names: Names) -> list[Hold]:
    return list(view(client, names).holds)


def hold(
    client: OpenSearch, names: Names, key: str, start_ms: int, end_ms: int, reason: str = ""
) -> None:
    """Stop serving rollups of [start, end) until ``release(key)`` (idempotent per key)."""
    _update_holds(client, names, key, Hold(key, start_ms, end_ms, reason))


def release(client: OpenSearch, names: Names, key: str) -> None:
    """Serve the held range from rollups again (a no-op for an unknown key)."""
    _update_holds(client, names, key, None)


@retry(
    retry=retry_if_exception_type(ConflictError),
    stop=stop_after_attempt(10),
    wait=wait_random_exponential(multiplier=0.01, max=0.5),
    reraise=True,
)
def _update_holds(client: OpenSearch, names: Names, key: str, new: Hold | None) -> None:
    """Read-modify-write of the holds document by compare-and-set (holders are concurrent
    reprocess runs; a conflict re-reads)."""
    ensure_state_index(client, names)
    try:
        doc: dict[str, Any] | None = client.get(index=names.state_index, id=HOLDS_ID)
    except NotFoundError:
        doc = None
    current = _holds(doc) if doc else {}
    if new is None and key not in current:
        return
    current.pop(key, None)
    if new is not None:
        current[key] = new
    body = {
        "rollups": {
            "holds": {
                h.key: {"start": h.start, "end": h.end, "reason": h.reason}
                for h in current.values()
            }
        }
    }
    cas = None if doc is None else (int(doc["_seq_no"]), int(doc["_primary_term"]))
    _put(client, names, HOLDS_ID, body, cas)


def _put(
    client: OpenSearch, names: Names, doc_id: str, body: dict[str, Any], cas: tuple[int, int] | None
) -> None:
    """Create the document (``cas`` None) or overwrite the version read; ConflictError when
    another writer got there first."""
    if cas is None:
        client.create(index=names.state_index, id=doc_id, body=body, refresh=True)
    else:
        client.index(
            index=names.state_index,
            id=doc_id,
            body=body,
            if_seq_no=cas[0],
            if_primary_term=cas[1],
            refresh=True,
        )


def commit(
    client: OpenSearch, names: Names, prior: State | None, new: State, fields: dict[str, Any]
) -> None:
    """Move the watermark from ``prior`` (as loaded) to ``new``; StateConflict if it moved."""
    body = {
        "rollups": {
            "generation": new.generation,
            "schema": new.schema,
            "watermark": new.watermark,
            **fields,
        }
    }
    try:
        _put(client, names, STATE_ID, body, None if prior is None else prior.cas)
    except ConflictError as exc:
        raise StateConflict("the rollup watermark was moved by another writer") from exc


@retry(
    retry=retry_if_exception_type(StateConflict),
    stop=stop_after_attempt(10),
    wait=wait_random_exponential(multiplier=0.01, max=0.5),
    reraise=True,
)
def publish(
    client: OpenSearch, names: Names, generation: str, slowest: int, fields: dict[str, Any]
) -> int:
    """Serve ``slowest`` (the slowest shard's W, rollups.shards) unless W is already there or
    beyond; the served W. Shard watermarks only grow, so any reading of their minimum is at
    most today's: moving W forward only (compare-and-set, retried) never serves an hour a
    shard has not rolled up, whichever worker publishes, in whatever order."""
    prior = load(client, names)
    served = prior.watermark if prior is not None and prior.serves(generation) else None
    if served is not None and served >= slowest:
        return served
    commit(client, names, prior, State(generation, slowest, None), fields)
    return slowest


def watermark(client: OpenSearch, names: Names) -> int | None:
    """W: raw events with ingested_at <= W in hours ended by W are reflected (None: no run,
    or only runs of an older job whose documents this code does not read)."""
    return View(load(client, names)).watermark()


@dataclass(frozen=True)
class Servable:
    """What the API plans a report with: servable hours and the W they were judged by
    (``held``: the closed hours a hold kept out)."""

    hours: set[int]
    watermark: int | None
    held: frozenset[int] = frozenset()


def candidates(
    client: OpenSearch, settings: Settings, names: Names, start_ms: int, end_ms: int, now_ms: int
) -> Servable:
    """The hours of [start, end) that are servable unless a late event made them dirty:
    closed at W and now, not held; with W. One ``mget``, no search."""
    return candidate_hours(view(client, names), settings.generation, start_ms, end_ms, now_ms)


def candidate_hours(
    seen: View, generation: str, start_ms: int, end_ms: int, now_ms: int
) -> Servable:
    """``candidates`` from a ``view`` already read (pure)."""
    state = seen.state
    if state is None or not state.serves(generation) or state.watermark is None:
        return Servable(set(), seen.watermark())
    first = -(-start_ms // HOUR_MS) * HOUR_MS  # the first whole hour inside the range
    limit = min(end_ms, state.watermark, now_ms)
    hours = set(range(first, limit - HOUR_MS + 1, HOUR_MS))
    held = seen.held(hours)
    return Servable(hours - held, state.watermark, frozenset(held))


def unsettled(hours: set[int], known: dict[int, int], watermark: int) -> set[int]:
    """Those of ``hours`` whose day may hold an event ingested after W: the day's arrivals
    bound (``known``, storage.arrivals) is above W, or unknown (pure)."""
    days = set(map(DAY_MS.__rfloordiv__, hours))  # h // DAY_MS per hour, in C
    changed = changed_days(days, known, watermark)
    if len(changed) == len(days):  # none settled (or none at all): every hour
        return set(hours)
    return {h for h in hours if h // DAY_MS in changed} if changed else set()


def changed_days(days: Iterable[int], known: dict[int, int], watermark: int) -> set[int]:
    """Those of ``days`` that may hold an event ingested after W: the day's arrivals bound
    (``known``, storage.arrivals) is above W, or unknown (pure)."""
    return {d for d in days if known.get(d, watermark + 1) > watermark}


def dirty_hours(
    client: OpenSearch, names: Names, merchant_id: str, hours: set[int], watermark: int
) -> set[int]:
    """Those of ``hours`` holding a raw event of the merchant ingested after ``watermark``.
    Only days whose arrivals bound (``storage.arrivals``) is above W, or unknown, are searched."""
    known = arrivals.bounds(client, names, {h // DAY_MS for h in hours})
    hours = unsettled(hours, known, watermark)
    if not hours:
        return set()
    start, end = min(hours), max(hours) + HOUR_MS
    body = late_events.hours_body(merchant_id, start, end, watermark)
    return late_events.hours_of(_search_raw(client, names, body, (start, end))) & hours


def servable(
    client: OpenSearch,
    settings: Settings,
    names: Names,
    merchant_id: str,
    start_ms: int,
    end_ms: int,
    now_ms: int,
) -> Servable:
    """UTC hour starts in [start, end) that the API may serve from rollups (module doc), and
    W, both from one reading of the state: ``candidates`` less ``dirty_hours``."""
    found = candidates(client, settings, names, start_ms, end_ms, now_ms)
    if not found.hours or found.watermark is None:
        return found
    dirty = dirty_hours(client, names, merchant_id, found.hours, found.watermark)
    return Servable(found.hours - dirty, found.watermark)


def freshness(client: OpenSearch, names: Names, merchant_id: str) -> tuple[int | None, int | None]:
    """(ingested_through, rolled_up_through) of a merchant, epoch ms or None (module doc)."""
    seen = view(client, names)
    body = late_events.freshness_body(merchant_id, seen.watermark())
    ingested, first_late = late_events.freshness_of(_search_raw(client, names, body))
    return ingested, rolled_up_through(seen, first_late)


def rolled_up_through(seen: View, first_late: int | None) -> int | None:
    """The end of the latest closed hour through which every hour is complete for a merchant
    whose earliest event ingested after W occurred at ``first_late`` (pure; module doc)."""
    wm = seen.watermark()
    if wm is None:
        return None
    through = hour_start(wm)
    if first_late is not None:
        through = min(through, hour_start(first_late))
    for held in seen.holds:
        if held.start < through:
            through = min(through, hour_start(held.start))
    return through


def _search_raw(
    client: OpenSearch, names: Names, body: dict[str, Any], span: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Search the served raw data; ``span`` (occurred_at range of the body) skips the days
    outside it (``storage.served``)."""
    index: str | None = names.events_alias
    if span is not None:
        index = served.indices_for(client, names.events_alias, *span)
    if index is None:
        return {}
    result: dict[str, Any] = client.search(
        index=index, body=body, ignore_unavailable=True, allow_no_indices=True
    )
    return result
