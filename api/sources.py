"""Execution: runs the requests api.dsl formatted, through api.engine (the API's only engine
access and its one error mapping), and reads the answers back as cells keyed by (group, bucket).

Keys: ``(None, None)`` the report total, ``(g, None)`` a group's total, ``(g, i)`` bucket ``i``
of group ``g`` (``g == ()`` when the report is not grouped). Source resolution's reads (the
rollup state, arrival bounds, the late-event search, freshness) run here too. Only this module
of the report stages imports api.engine (.importlinter, docs/decisions/0230).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from functools import lru_cache, partial
from typing import Any, TypeVar

from opensearchpy import OpenSearch

from api import dsl
from api.cache import ROLLUP_CELLS
from api.cells import Cell, added_up, decode_sketch, raw_cell, rollup_cell
from api.engine import checked, doc_version, engine_errors, mget, search
from api.errors import BadInput, UnexpectedAnswer
from api.model import (
    HOUR_MS,
    MISSING,
    Base,
    DocVersion,
    Granularity,
    Interval,
    QueryPlan,
    ResolvedPlan,
    Source,
    Versions,
)
from pulse.clock import parse_instant
from pulse.naming import Names
from pulse.settings import Settings
from rollups import state  # the named seam: the rollup state source resolution plans with
from storage import arrivals, fx, late_events, served
from storage import first_purchases as first_purchase_state
from storage import rollup_schema as rs

GroupKey = tuple[str, ...]
CellKey = tuple[GroupKey | None, int | None]
Cells = dict[CellKey, Cell]
PAGE = dsl.PAGE
T = TypeVar("T")

# The report's reads run side by side: the rollup part and the raw tail overlap in time, and
# the late-event search runs alongside the speculative reads (api.resolve).
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="pulse-query")


@dataclass(frozen=True)
class Ctx:
    """What execution needs: the engine client, resource names and settings."""

    client: OpenSearch
    names: Names
    settings: Settings

    def index(self, source: Source) -> str:
        return self.names.events_alias if source is Source.RAW else self.names.rollups_alias

    def search(
        self, source: Source, body: dict[str, Any], intervals: tuple[Interval, ...] = ()
    ) -> Any:
        """Search one source; ``intervals`` (what the body is restricted to) lets the search
        skip the indices that cannot hold them."""
        span = (min(a for a, _ in intervals), max(b for _, b in intervals)) if intervals else None
        timeout = self.settings.api_request_timeout_s
        return search(self.client, self.index(source), body, timeout, span)


def merge_into(target: Cells, src: Cells) -> None:
    for key, cell in src.items():
        target.setdefault(key, Cell()).merge(cell)


def _reader(plan: QueryPlan, source: Source, ctx: Ctx) -> Any:
    threshold = ctx.settings.uniques_precision_threshold
    if source is Source.RAW:
        return lambda agg: raw_cell(agg, plan.bases, threshold)
    return rollup_cell


def _bucket_index(plan: QueryPlan) -> dict[int, int]:
    return _index_of_starts(plan.boundaries)


@lru_cache(maxsize=256)  # a dashboard's ranges repeat: not a 720-entry dict per read
def _index_of_starts(boundaries: tuple[int, ...]) -> dict[int, int]:
    """bucket start -> bucket number; shared between reads: never changed."""
    return {start: i for i, start in enumerate(boundaries[:-1])}


def _time_cells(
    plan: QueryPlan, agg: dict[str, Any], group: GroupKey, read: Any, out: Cells
) -> None:
    if plan.granularity is Granularity.ALL:
        out[(group, 0)] = read(agg)
        return
    index = _bucket_index(plan)
    for bucket in agg.get("t", {}).get("buckets", []):
        i = index.get(int(bucket["key"]))
        if i is None:
            raise UnexpectedAnswer(f"engine bucket {bucket['key']} is not a planned boundary")
        out[(group, i)] = read(bucket)


def in_background(fn: Callable[..., T], *args: Any) -> Future[T]:
    """Run one read on the query pool (its failures surface at ``result()``)."""
    return _POOL.submit(fn, *args)


# --- source resolution's reads -------------------------------------------------------------


def read_state(ctx: Ctx) -> state.View:
    """The rollup state and holds (rollups.state, one ``mget``)."""
    with engine_errors("rollup state read"):
        return state.view(ctx.client, ctx.names)


def read_state_bounds_and_versions(
    ctx: Ctx, days: Iterable[int], docs: list[dict[str, Any]]
) -> tuple[state.View, dict[int, int], Versions]:
    """The rollup state and holds, the arrival bounds of ``days`` and the versions of
    ``docs`` (api.dsl.version_docs: day packs without sources, the rates' version document):
    one ``mget`` (rollups.state.view_bounds_and, decision 0260)."""
    with engine_errors("rollup state read"):
        seen, bounds, found = state.view_bounds_and(ctx.client, ctx.names, days, docs)
    packs: list[DocVersion | None] = []
    rates: str | None = None
    fx_index = ctx.names.fx_index
    for doc in checked(found):
        if doc.get("_index") == fx_index and doc.get("_id") == fx.VERSION_ID:
            rates = fx.version_of(doc)
        else:
            packs.append(doc_version(doc))
    known = tuple(v for v in packs if v is not None)
    return seen, bounds, Versions(known if packs and len(known) == len(packs) else None, rates)


def arrival_bounds(ctx: Ctx, days: Iterable[int]) -> dict[int, int]:
    """Per UTC day the newest ``ingested_at`` written there, where known (storage.arrivals)."""
    with engine_errors("rollup state read"):
        return arrivals.bounds(ctx.client, ctx.names, days)


def _raw(ctx: Ctx, request: dsl.RawSearch) -> Any:
    timeout = ctx.settings.api_request_timeout_s
    return search(ctx.client, ctx.names.events_alias, request.body, timeout, request.span)


def late_hours(ctx: Ctx, request: dsl.RawSearch) -> set[int]:
    """The hours a late-event search found events in (storage.late_events)."""
    return late_events.hours_of(_raw(ctx, request))


def freshness(ctx: Ctx, request: dsl.RawSearch) -> tuple[int | None, int | None]:
    """(newest ingested_at, earliest occurred_at ingested after W) of a merchant."""
    return late_events.freshness_of(_raw(ctx, request))


# --- reads of the first-purchase state and exchange rates (api.customers, api.fx) ----------


def search_indices(ctx: Ctx, index: str, body: dict[str, Any]) -> Any:
    """A search of named indices (a comma-separated list), not routed by time."""
    return search(ctx.client, index, body, ctx.settings.api_request_timeout_s)


def raw_members(ctx: Ctx) -> list[served.Member]:
    """The members of the raw read alias, with the day each holds (storage.served)."""
    with engine_errors("raw members read"):
        return served.members(ctx.client, ctx.names.events_alias)


def first_purchases(
    ctx: Ctx, keys: list[tuple[str, int]]
) -> dict[tuple[str, int], first_purchase_state.Stored]:
    """The stored first purchases of (merchant, customer hash) keys (storage.first_purchases)."""
    with engine_errors("first purchases read"):
        return first_purchase_state.read(
            ctx.client, ctx.names, ctx.settings.generation, keys, ctx.settings.api_request_timeout_s
        )


def exchange_rates(ctx: Ctx, currencies: set[str], first: date, last: date) -> fx.RateTable:
    """The stored rates that can apply to UTC days [first, last] (storage.fx)."""
    with engine_errors("exchange rates read"):
        return fx.rates_for(ctx.client, ctx.names, currencies, first, last)


# --- the report's reads --------------------------------------------------------------------


@dataclass(frozen=True)
class Shared:
    """Cells both ranking and the series take a part of: rollup customer sketches, and
    NEW/RETURNING_CUSTOMERS (api.customers, which reads them whole)."""

    sketches: Cells
    firsts: Cells

    def group_totals(self) -> list[Cells]:
        return [
            {k: c for k, c in part.items() if k[0] is not None and k[1] is None}
            for part in (self.sketches, self.firsts)
        ]

    def chosen(self, groups: tuple[GroupKey, ...] | None) -> list[Cells]:
        """The report total and the cells of the chosen groups."""
        keep = set(groups) if groups is not None else {()}
        return [
            {k: c for k, c in part.items() if k[0] is None or k[0] in keep}
            for part in (self.sketches, self.firsts)
        ]


@dataclass(frozen=True)
class Fixed:
    """Which merged cells are one remembered answer's own (api.cache): ``token`` names that
    answer (the same token, the same cells), ``elsewhere`` holds every key another part of the
    pass also has. A key not elsewhere has that answer's cell, or no cell in either; with a
    ``variant``, that cell as the variant makes it from the answer's (the same token and
    variant, the same cell)."""

    token: int
    elsewhere: frozenset[CellKey]
    variant: Hashable = None  # what else made the cells from the answer's (a conversion)


@dataclass(frozen=True)
class Results:
    """The execution stage's answer to one pass of a report: merged cells of both sources
    (money not yet converted) and the groups they were read for (None: not grouped). The
    cells may be shared with remembered ones (api.cells.added_up): replace, never change;
    ``fixed`` says which are a remembered answer's own (None once any cell is replaced)."""

    resolved: ResolvedPlan
    groups: tuple[GroupKey, ...] | None
    cells: Cells
    fixed: Fixed | None = None


def sketches(ctx: Ctx, requests: dsl.SharedRequests) -> Cells:
    """The rollup documents' customer sketches, unioned into every cell they belong to."""
    out: Cells = {}
    for pages in requests.sketches:
        merge_into(out, sketch_cells(ctx, requests.resolved.plan, pages))
    return out


def group_totals(ctx: Ctx, requests: dsl.TotalsRequests) -> Cells:
    """Every group's total from both sources, merged (for ranking)."""
    totals: Cells = {}
    for pages in requests.pages:
        merge_into(totals, _group_pages(ctx, requests.resolved.plan, pages))
    return totals


def execute(ctx: Ctx, requests: dsl.SeriesRequests, shared: Shared) -> Results:
    """Run every source's read at once and merge their cells with the shared ones."""
    reads = requests.reads
    parts: list[Cells | None] = [_remembered(ctx, requests, read) for read in reads]
    todo = [i for i, part in enumerate(parts) if part is None]
    # The first engine read runs in this thread while the pool runs the others: one hop
    # fewer; with the rollup part remembered, the raw tail alone needs no hop at all.
    futures = [(i, _POOL.submit(_read, ctx, requests, reads[i])) for i in todo[1:]]
    if todo:
        parts[todo[0]] = _read(ctx, requests, reads[todo[0]])
    for i, future in futures:
        parts[i] = future.result()
    done = [part for part in parts if part is not None]
    chosen = shared.chosen(requests.groups)
    # Not copied: the result shares cells with the parts, remembered ones too (api.cells).
    cells = added_up([*done, *chosen])
    return Results(requests.resolved, requests.groups, cells, _fixed(reads, done, chosen))


def _fixed(
    reads: tuple[dsl.Search | dsl.Packs, ...], parts: list[Cells], chosen: list[Cells]
) -> Fixed | None:
    """The first pack read's part that is a held answer, and the keys the others have."""
    for i, (read, part) in enumerate(zip(reads, parts, strict=True)):
        token = ROLLUP_CELLS.token(part) if isinstance(read, dsl.Packs) else None
        if token is not None:
            others = [*parts[:i], *parts[i + 1 :], *chosen]
            return Fixed(token, frozenset().union(*others))
    return None


def _remembered(
    ctx: Ctx, requests: dsl.SeriesRequests, read: dsl.Search | dsl.Packs
) -> Cells | None:
    """A pack read's cells when remembered for the versions already read, else None."""
    if not isinstance(read, dsl.Packs):
        return None
    plan = requests.resolved.plan
    return ROLLUP_CELLS.remembered(ctx, plan, read, requests.resolved.versions.packs)


def _read(ctx: Ctx, requests: dsl.SeriesRequests, read: dsl.Search | dsl.Packs) -> Cells:
    plan = requests.resolved.plan
    if isinstance(read, dsl.Packs):  # remembered by the packs' versions (decision 0246)
        known = requests.resolved.versions.packs
        return ROLLUP_CELLS.cells(ctx, plan, read, packs_cells, known)
    return series_cells(ctx, plan, read, requests.groups)


def rollup_index(ctx: Ctx) -> Callable[[int], str]:
    """The monthly rollup index holding a day, of the served generation: the same function
    for the same names and generation (what api.dsl's remembered pack entries key on)."""
    return _rollup_index(ctx.names, ctx.settings.generation)


@lru_cache(maxsize=64)
def _rollup_index(names: Names, generation: str) -> Callable[[int], str]:
    return partial(rs.index_for, names, generation)


def series_cells(
    ctx: Ctx, plan: QueryPlan, read: dsl.Search, groups: tuple[GroupKey, ...] | None
) -> Cells:
    """Report total, and per bucket (per chosen group) cells from one source."""
    answer = ctx.search(read.source, read.body, read.intervals)
    aggs = answer.get("aggregations") or {}
    read_cell = _reader(plan, read.source, ctx)
    if groups is None:
        total = {**aggs, "doc_count": _hits(answer)}
        out: Cells = {(None, None): read_cell(total), ((), None): read_cell(total)}
        # ALL has no histogram: its one bucket is the total (which carries the doc_count).
        whole = plan.granularity is Granularity.ALL
        _time_cells(plan, total if whole else aggs, (), read_cell, out)
        return out
    out = {(None, None): read_cell(aggs.get("all", {"doc_count": 0}))}
    buckets = aggs.get("g", {}).get("buckets", {})
    for i, group in enumerate(groups):
        agg = buckets.get(str(i), {"doc_count": 0})
        out[(group, None)] = read_cell(agg)
        _time_cells(plan, agg, group, read_cell, out)
    return out


def _hits(answer: dict[str, Any]) -> int:
    """The exact hit count of an answer asked with ``track_total_hits`` (0 when absent)."""
    total = (answer.get("hits") or {}).get("total")
    if isinstance(total, dict):
        return int(total.get("value") or 0)
    return int(total or 0)


def _group_pages(ctx: Ctx, plan: QueryPlan, pages: dsl.Pages) -> Cells:
    """Every group's total from one source (composite paging), for ranking."""
    read = _reader(plan, pages.source, ctx)
    out: Cells = {}
    after: dict[str, Any] | None = None
    while True:
        body = pages.page(after)
        comp = (ctx.search(pages.source, body, pages.intervals).get("aggregations") or {}).get(
            "g", {}
        )
        for bucket in comp.get("buckets", []):
            key = tuple(MISSING if v is None else str(v) for v in bucket["key"].values())
            out[(key, None)] = read(bucket)
        if len(out) > ctx.settings.max_groups:
            raise BadInput(
                f"more than {ctx.settings.max_groups} groups; add filters or group by fewer "
                "dimensions"
            )
        after = comp.get("after_key")
        if not after or len(comp.get("buckets", [])) < PAGE:
            return out


def sketch_cells(ctx: Ctx, plan: QueryPlan, pages: dsl.Pages) -> Cells:
    """Union the rollup documents' customer sketches into every cell they belong to."""
    out: Cells = {}
    after: list[Any] | None = None
    while True:
        hits = ctx.search(Source.ROLLUPS, pages.page(after), pages.intervals)
        page = hits.get("hits", {}).get("hits", [])
        for hit in page:
            _place_sketch(plan, hit["_source"], out)
        if len(page) < PAGE:
            return out
        after = page[-1]["sort"]


def total_doc_cells(ctx: Ctx, plan: QueryPlan, intervals: tuple[Interval, ...]) -> Cells:
    """Cells of an unfiltered, ungrouped report from the day packs of ``intervals``' hours."""
    return packs_cells(ctx, plan, dsl.packs_request(plan, intervals, rollup_index(ctx)))


def packs_cells(ctx: Ctx, plan: QueryPlan, read: dsl.Packs) -> Cells:
    """Cells of an unfiltered, ungrouped report from the merchant's day packs: one document
    per UTC day holds its 24 merchant-hour totals (rollups.packs), folded here for exactly the
    hours given to rollups."""
    out: Cells = {(None, None): Cell(), ((), None): Cell()}
    timeout = ctx.settings.api_request_timeout_s
    packs = {
        rs.day_start(int(doc[rs.DAY])): doc[rs.PACK]
        for doc in (_pack(plan, d) for d in mget(ctx.client, list(read.docs), timeout))
        if doc is not None
    }
    for hour in (h for a, b in read.intervals for h in range(a, b, HOUR_MS)):
        pack = packs.get(rs.day_start(hour))
        if pack is not None:
            _place_total(plan, hour, pack, out)
    return out


def _pack(plan: QueryPlan, found: dict[str, Any]) -> dict[str, Any] | None:
    """A fetched pack's source; the tenant guard: a pack must be the plan's merchant's."""
    if not found.get("found"):
        return None
    doc: dict[str, Any] = found["_source"]
    if doc.get(rs.MERCHANT) != plan.merchant_id or doc.get(rs.LEVEL) != rs.LEVEL_DAY:
        raise UnexpectedAnswer("a day pack of another merchant answered by id")
    return doc


def _place_total(plan: QueryPlan, hour: int, pack: dict[str, Any], out: Cells) -> None:
    slot = (hour - rs.day_start(hour)) // HOUR_MS
    cell = Cell(
        events=int(pack[rs.EVENTS][slot]),
        paid=int(pack[rs.PAYMENTS_SUCCEEDED][slot]),
        gross=int(pack[rs.GROSS_MILLI][slot]),
        failed=int(pack[rs.PAYMENTS_FAILED][slot]),
        refunds=int(pack[rs.REFUNDS_MILLI][slot]),
        # A pack of schema 3 has no disputes: only for days older than raw retention at the
        # upgrade, which no rebuild can reach (decision 0205); their disputes are unknown.
        disputes=int(pack[rs.DISPUTES][slot]) if rs.DISPUTES in pack else 0,
    )
    if not cell.events:
        return  # an hour without events: zero everywhere, the buckets are zero-filled
    i = _bucket_of(plan, hour)
    if plan.money:
        _place_money(plan, hour, pack, slot, cell, out)
    for key in ((None, None), ((), None), ((), i)):
        out.setdefault(key, Cell()).merge(cell)


def _place_money(
    plan: QueryPlan, hour: int, pack: dict[str, Any], slot: int, cell: Cell, out: Cells
) -> None:
    """A slot's money by currency (storage.rollup_schema: one code, or the breakdown): into
    the cell per UTC day when converting, else into the report's currencies (api.money)."""
    codes = pack.get(rs.CURRENCY)
    code = codes[slot] if codes else rs.NO_MONEY
    if code == rs.NO_MONEY:
        return
    total = out[(None, None)].currencies()  # total_doc_cells made the cell
    if code != rs.MULTI and not plan.converts:  # the common case, kept to two set adds
        if cell.paid:
            total.paid.add(code)
        if cell.refunds:
            total.refunded.add(code)
        return
    if code == rs.MULTI:
        money: dict[str, rs.MoneyEntry] = pack[rs.MONEY][str(slot)]
    else:  # one currency: the slot's arrays are its figures
        money = {code: [cell.paid, cell.gross, cell.refunds]}
    if plan.converts:  # only the money the plan adds needs a rate, as from the other paths
        day, bases = rs.day_start(hour), plan.bases
        for currency, (_, gross, refunds) in money.items():
            gross = gross if Base.GROSS in bases else 0
            cell.currencies().add((currency, day), gross, refunds if Base.REFUNDS in bases else 0)
        return
    for currency, (paid, _, refunds) in money.items():
        if paid:
            total.paid.add(currency)
        if refunds:
            total.refunded.add(currency)


def _hour(doc: dict[str, Any]) -> int:
    value = doc[rs.HOUR]
    return parse_instant(value) if isinstance(value, str) else int(value)


def _bucket_of(plan: QueryPlan, hour: int) -> int:
    """The report bucket holding a whole UTC hour (the split never serves a cut hour)."""
    return 0 if plan.granularity is Granularity.ALL else bisect_right(plan.boundaries, hour) - 1


def _place_sketch(plan: QueryPlan, doc: dict[str, Any], out: Cells) -> None:
    sketch = decode_sketch(doc[rs.CUSTOMERS_SKETCH])
    i = _bucket_of(plan, _hour(doc))
    group = tuple(str(doc.get(d.field, MISSING)) for d in plan.group_by)
    for key in ((None, None), (group, None), (group, i)):
        out.setdefault(key, Cell()).uniques.add_sketch(sketch)
