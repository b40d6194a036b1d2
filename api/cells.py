"""Per-cell additive aggregates read back from engine answers, and how cells merge.

A cell is one (group, bucket) of a report, or a group's or the report's total. Counts and
money sums add exactly across sources; distinct customers do not, so they are kept either as
one engine estimate (single-source reports) or as an HLL sketch union (stitched reports).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from datasketches import hll_sketch, hll_union, tgt_hll_type

from api.model import Base
from storage.rollup_schema import SKETCH_LG_K

HLL_LG_K = SKETCH_LG_K  # the rollup writer's lg_k, so unions keep their precision
CONFIDENCE_SIGMAS = 2  # error bounds are ~95% intervals
# OpenSearch HyperLogLog++ (precision 14 for precision_threshold 3000): relative std error.
HLLPP_RSE = 1.04 / math.sqrt(2**14)


@dataclass
class Uniques:
    """Distinct customers of one cell: an engine estimate, or a sketch union (+ overflow)."""

    estimate: float = 0.0
    bound: float = 0.0
    union: Any = None  # datasketches.hll_union, when stitching rollups with raw
    overflow: float = 0.0  # raw customers that could not be listed: an upper bound to add

    def add_sketch(self, sketch: Any) -> None:
        if self.union is None:
            self.union = hll_union(HLL_LG_K)
        self.union.update(sketch)

    def add_hashes(self, hashes: list[int]) -> None:
        if not hashes:
            return
        sketch = hll_sketch(HLL_LG_K, tgt_hll_type.HLL_8)
        for h in hashes:
            sketch.update(h)
        self.add_sketch(sketch)

    def merge(self, other: Uniques) -> None:
        if other.union is not None:
            self.add_sketch(other.union.get_result(tgt_hll_type.HLL_8))
        self.estimate += other.estimate
        self.bound += other.bound
        self.overflow += other.overflow

    def value(self) -> tuple[float, float]:
        """(estimate, absolute error bound)."""
        est, bound = self.estimate, self.bound
        if self.union is not None:
            sketch = self.union.get_result(tgt_hll_type.HLL_8)
            sketch_est = sketch.get_estimate()
            est += sketch_est
            bound += max(0.0, sketch.get_upper_bound(CONFIDENCE_SIGMAS) - sketch_est)
        return round(est + self.overflow / 2), bound + self.overflow / 2


def engine_cardinality_bound(value: float, threshold: int) -> float:
    """Error bound of an OpenSearch cardinality result.

    At or below precision_threshold the engine counts 32-bit hashes in a set: only hash
    collisions err (expected n^2 / 2^33 < 0.002 for n = 3000), reported as at most 1.
    Above it, HyperLogLog++ with ~0.81% relative standard error.
    """
    if value <= 0:
        return 0.0
    if value <= threshold:
        return 1.0
    return math.ceil(CONFIDENCE_SIGMAS * HLLPP_RSE * value)


MoneyKey = tuple[str, int]  # (currency or MISSING, start of the UTC day in epoch ms)


@dataclass
class Money:
    """What a cell knows of currencies: on report totals, the currencies of succeeded
    payments and of refunded amounts (api.dsl.currency_probe), which decide every money
    value's currency (api.money); in converting plans, [gross, refunds] milli per (currency,
    UTC day), for api.fx."""

    paid: set[str] = field(default_factory=set)
    refunded: set[str] = field(default_factory=set)
    amounts: dict[MoneyKey, list[int]] = field(default_factory=dict)

    def merge(self, other: Money) -> None:
        self.paid |= other.paid
        self.refunded |= other.refunded
        for key, (gross, refunds) in other.amounts.items():
            self.add(key, gross, refunds)

    def add(self, key: MoneyKey, gross: int, refunds: int) -> None:
        if gross or refunds:  # a zero amount converts to zero in any currency: no rate needed
            entry = self.amounts.setdefault(key, [0, 0])
            entry[0] += gross
            entry[1] += refunds


@dataclass
class Cell:
    events: int = 0
    paid: int = 0
    gross: int = 0  # milli
    failed: int = 0
    refunds: int = 0  # milli
    disputes: int = 0
    uniques: Uniques = field(default_factory=Uniques)
    # None on nearly every cell (only report totals and converting plans have one): a cell is
    # made and merged thousands of times per report, so it costs nothing until it is needed.
    money: Money | None = None
    new_customers: int = 0  # exact, from one source only (api.customers)
    returning_customers: int = 0

    def merge(self, other: Cell) -> None:
        self.events += other.events
        self.paid += other.paid
        self.gross += other.gross
        self.failed += other.failed
        self.refunds += other.refunds
        self.disputes += other.disputes
        self.uniques.merge(other.uniques)
        self.new_customers += other.new_customers
        self.returning_customers += other.returning_customers
        if other.money is not None:
            self.currencies().merge(other.money)

    def currencies(self) -> Money:
        """This cell's Money, made on first use."""
        if self.money is None:
            self.money = Money()
        return self.money

    def with_amounts(self, gross: int, refunds: int) -> Cell:
        """A copy with other gross and refunds (api.fx's conversion), sharing this cell's
        uniques and money: a cell made so is read, never merged into."""
        copy = object.__new__(Cell)  # ~0.3 us; dataclasses.replace or copy.copy cost 1-2 us
        copy.__dict__.update(self.__dict__)
        copy.gross, copy.refunds = gross, refunds
        return copy


K = TypeVar("K", bound=Hashable)


def added_up(parts: Iterable[dict[K, Cell]]) -> dict[K, Cell]:
    """The cells of ``parts`` added up by key, as merging each into a fresh cell would, but
    without copying the cells only one part holds: the result shares them with the parts.

    A part may be a remembered answer (api.cache: ~720 cells of day packs), which the
    per-request copy cost ~1 ms of a 30-day hourly report; usually only the totals are in
    two parts. So: read the result, never change its cells in place (replace them, as
    api.fx's conversion does). A key held by two parts gets a fresh cell. So does a cell
    holding a sketch union: its copy is a union of the union's result, which is what readers
    have always read (kept exactly)."""
    out: dict[K, Cell] = {}
    fresh: set[K] = set()  # keys whose cell in ``out`` was made here
    for part in parts:
        for key, cell in part.items():
            have = out.get(key)
            if have is None:
                if cell.uniques.union is None:
                    out[key] = cell
                    continue
                have = out[key] = Cell()
                fresh.add(key)
            elif key not in fresh:
                have = out[key] = _copy(have)
                fresh.add(key)
            have.merge(cell)
    return out


def _copy(cell: Cell) -> Cell:
    fresh = Cell()
    fresh.merge(cell)
    return fresh


def _keys(agg: dict[str, Any], name: str) -> set[str]:
    """The currencies of a probe aggregation (api.dsl.currency_probe), if it was asked."""
    probe = agg.get(name)
    if not isinstance(probe, dict):
        return set()
    return {str(b["key"]) for b in probe.get("c", {}).get("buckets", [])}


def _currencies(cell: Cell, agg: dict[str, Any]) -> None:
    money = cell.currencies()
    money.paid, money.refunded = _keys(agg, "cp"), _keys(agg, "cr")


def _raw_money(cell: Cell, agg: dict[str, Any]) -> None:
    """[gross, refunds] per (currency, UTC day) of a converting raw bucket (api.dsl.fx_aggs)."""
    for name, slot in (("paid", 0), ("refunds", 1)):
        for cur in (agg.get(name) or {}).get("fx", {}).get("buckets", []):
            for day in cur["d"]["buckets"]:
                amount = [0, 0]
                amount[slot] = _int(day, "amt", "value")
                cell.currencies().add((str(cur["key"]), int(day["key"])), *amount)


def _rollup_money(cell: Cell, agg: dict[str, Any]) -> None:
    for cur in agg.get("fx", {}).get("buckets", []):
        for day in cur["d"]["buckets"]:
            key = (str(cur["key"]), int(day["key"]))
            cell.currencies().add(key, _int(day, "gross", "value"), _int(day, "refunds", "value"))


def _int(node: Any, *path: str) -> int:
    for key in path:
        if not isinstance(node, dict):
            return 0
        node = node.get(key)
    if node is None:
        return 0
    # Sums of integer milli come back as doubles; below 2^53 they are exact integers.
    return node if isinstance(node, int) else round(float(node))


def raw_cell(agg: dict[str, Any], bases: frozenset[Base], threshold: int) -> Cell:
    """A cell from one raw aggregation bucket (the top level, a filters or date bucket)."""
    cell = Cell(
        events=_int(agg, "doc_count"),
        paid=_int(agg, "paid", "doc_count"),
        gross=_int(agg, "paid", "amt", "value"),
        failed=_int(agg, "failed", "doc_count"),
        refunds=_int(agg, "refunds", "amt", "value"),
        disputes=_int(agg, "disputes", "doc_count"),
    )
    if "cp" in agg or "cr" in agg:  # only the report total of a money report has a probe
        _currencies(cell, agg)
    if "fx" in agg.get("paid", ()) or "fx" in agg.get("refunds", ()):
        _raw_money(cell, agg)
    if Base.CUSTOMERS not in bases:
        return cell
    card = float(_int(agg, "cust", "value"))
    hashes = agg.get("cust_h")
    if hashes is None:
        cell.uniques = Uniques(card, engine_cardinality_bound(card, threshold))
    elif hashes.get("sum_other_doc_count", 0) > 0:
        cell.uniques = Uniques(overflow=card + engine_cardinality_bound(card, threshold))
    else:
        cell.uniques.add_hashes([int(b["key"]) for b in hashes.get("buckets", [])])
    return cell


def rollup_cell(agg: dict[str, Any]) -> Cell:
    """A cell from one rollup aggregation bucket (sums of the hourly counters)."""
    cell = Cell(
        events=_int(agg, "events", "value"),
        paid=_int(agg, "paid", "value"),
        gross=_int(agg, "gross", "value"),
        failed=_int(agg, "failed", "value"),
        refunds=_int(agg, "refunds", "value"),
        disputes=_int(agg, "disputes", "value"),
    )
    if "cp" in agg or "cr" in agg:
        _currencies(cell, agg)
    if "fx" in agg:
        _rollup_money(cell, agg)
    return cell


def decode_sketch(encoded: str) -> Any:
    return hll_sketch.deserialize(base64.b64decode(encoded))
