"""Execution against each source, returning cells keyed by (group, bucket).

Keys: ``(None, None)`` the report total, ``(g, None)`` a group's total, ``(g, i)`` bucket ``i``
of group ``g`` (``g == ()`` when the report is not grouped).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import partial
from typing import Any

from opensearchpy import OpenSearch

from api import dsl
from api.cells import Cell, decode_sketch, raw_cell, rollup_cell
from api.engine import mget, search
from api.errors import BadInput, UnexpectedAnswer
from api.model import HOUR_MS, MISSING, Base, Granularity, Interval, QueryPlan, Source
from pulse.clock import parse_instant
from pulse.naming import Names
from pulse.settings import Settings
from storage import rollup_schema as rs

GroupKey = tuple[str, ...]
CellKey = tuple[GroupKey | None, int | None]
Cells = dict[CellKey, Cell]
PAGE = 1000


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
    return {start: i for i, start in enumerate(plan.boundaries[:-1])}


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


def series_cells(
    ctx: Ctx,
    plan: QueryPlan,
    source: Source,
    intervals: tuple[Interval, ...],
    groups: tuple[GroupKey, ...] | None,
    hashes_cap: int = 0,
) -> Cells:
    """Report total, and per bucket (per chosen group) cells from one source."""
    threshold = ctx.settings.uniques_precision_threshold
    body = dsl.series_body(plan, source, intervals, groups, hashes_cap, threshold)
    answer = ctx.search(source, body, intervals)
    aggs = answer.get("aggregations") or {}
    read = _reader(plan, source, ctx)
    if groups is None:
        total = {**aggs, "doc_count": _hits(answer)}
        out: Cells = {(None, None): read(total), ((), None): read(total)}
        # ALL has no histogram: its one bucket is the total (which carries the doc_count).
        _time_cells(plan, total if plan.granularity is Granularity.ALL else aggs, (), read, out)
        return out
    out = {(None, None): read(aggs.get("all", {"doc_count": 0}))}
    buckets = aggs.get("g", {}).get("buckets", {})
    for i, group in enumerate(groups):
        agg = buckets.get(str(i), {"doc_count": 0})
        out[(group, None)] = read(agg)
        _time_cells(plan, agg, group, read, out)
    return out


def _hits(answer: dict[str, Any]) -> int:
    """The exact hit count of an answer asked with ``track_total_hits`` (0 when absent)."""
    total = (answer.get("hits") or {}).get("total")
    if isinstance(total, dict):
        return int(total.get("value") or 0)
    return int(total or 0)


def group_totals(
    ctx: Ctx, plan: QueryPlan, source: Source, intervals: tuple[Interval, ...], hashes_cap: int
) -> Cells:
    """Every group's total from one source (composite paging), for ranking."""
    threshold = ctx.settings.uniques_precision_threshold
    read = _reader(plan, source, ctx)
    out: Cells = {}
    after: dict[str, Any] | None = None
    while True:
        body = dsl.groups_body(plan, source, intervals, PAGE, after, threshold, hashes_cap)
        comp = (ctx.search(source, body, intervals).get("aggregations") or {}).get("g", {})
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


def sketch_cells(ctx: Ctx, plan: QueryPlan, intervals: tuple[Interval, ...]) -> Cells:
    """Union the rollup documents' customer sketches into every cell they belong to."""
    out: Cells = {}
    after: list[Any] | None = None
    while True:
        body = dsl.sketches_body(plan, intervals, PAGE, after)
        hits = ctx.search(Source.ROLLUPS, body, intervals)
        page = hits.get("hits", {}).get("hits", [])
        for hit in page:
            _place_sketch(plan, hit["_source"], out)
        if len(page) < PAGE:
            return out
        after = page[-1]["sort"]


def total_doc_cells(ctx: Ctx, plan: QueryPlan, intervals: tuple[Interval, ...]) -> Cells:
    """Cells of an unfiltered, ungrouped report from the merchant's day packs: one document
    per UTC day holds its 24 merchant-hour totals (rollups.packs), folded here for exactly the
    hours given to rollups."""
    out: Cells = {(None, None): Cell(), ((), None): Cell()}
    hours = [h for a, b in intervals for h in range(a, b, HOUR_MS)]
    index_of = partial(rs.index_for, ctx.names, ctx.settings.generation)
    docs = dsl.packs_docs(plan, hours, index_of)
    packs = {
        rs.day_start(int(doc[rs.DAY])): doc[rs.PACK]
        for doc in (
            _pack(plan, d) for d in mget(ctx.client, docs, ctx.settings.api_request_timeout_s)
        )
        if doc is not None
    }
    for hour in hours:
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
