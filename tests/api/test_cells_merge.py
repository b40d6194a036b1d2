"""api.cells.added_up merges without copying: the same cells as merging every part into fresh
cells (``api.sources.merge_into``, the reference), and no part is ever changed; api.fx's
conversion replaces cells instead of changing them (they may be remembered ones, api.cache)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from api.cells import Cell, Money, Uniques, added_up
from api.fx import Converter
from api.sources import Cells, merge_into

KEYS = [(None, None), ((), None), *(((), i) for i in range(4)), (("web",), None), (("web",), 0)]
small = st.integers(min_value=0, max_value=50)


@st.composite
def cells(draw: st.DrawFn) -> Cell:
    events, paid, gross, failed, refunds, disputes = (draw(small) for _ in range(6))
    cell = Cell(events, paid, gross, failed, refunds, disputes)
    cell.new_customers, cell.returning_customers = draw(small), draw(small)
    kind = draw(st.sampled_from(["none", "estimate", "union"]))
    if kind == "estimate":
        cell.uniques = Uniques(float(draw(small)), float(draw(small)), overflow=draw(small))
    elif kind == "union":
        cell.uniques.add_hashes(draw(st.lists(st.integers(0, 2**40), min_size=1, max_size=30)))
    if draw(st.booleans()):
        money = cell.currencies()
        money.paid = set(draw(st.sets(st.sampled_from(["EUR", "USD", "GBP"]))))
        money.refunded = set(draw(st.sets(st.sampled_from(["EUR", "INR"]))))
        for day in draw(st.sets(st.integers(0, 3), max_size=3)):
            money.add(("EUR", day), draw(small), draw(small))
    return cell


parts = st.lists(
    st.dictionaries(st.sampled_from(KEYS), cells(), max_size=len(KEYS)), min_size=0, max_size=4
)


def view(cell: Cell) -> tuple[Any, ...]:
    """Everything a reader of a cell reads (api.report, api.money, api.fx, api.rank)."""
    money = cell.money or Money()
    amounts = sorted((k, tuple(v)) for k, v in money.amounts.items())
    counters = (cell.events, cell.paid, cell.gross, cell.failed, cell.refunds, cell.disputes)
    customers = (cell.new_customers, cell.returning_customers)
    return (*counters, *customers, cell.uniques.value(), sorted(money.paid),
            sorted(money.refunded), amounts)  # fmt: skip


def views(merged: Cells) -> list[tuple[Any, tuple[Any, ...]]]:
    return [(key, view(cell)) for key, cell in merged.items()]  # in order: order is kept too


def reference(given_parts: list[Cells]) -> Cells:
    out: Cells = {}
    for part in given_parts:
        merge_into(out, part)
    return out


@given(parts)
def test_added_up_equals_merging_into_fresh_cells_and_changes_no_part(
    given_parts: list[Cells],
) -> None:
    before = [views(part) for part in given_parts]
    merged = added_up(given_parts)
    assert views(merged) == views(reference(given_parts))
    assert [views(part) for part in given_parts] == before
    # A cell two parts hold is the result's own: changing it changes no part.
    for key, cell in merged.items():
        if sum(key in part for part in given_parts) > 1:
            cell.merge(Cell(events=1000, money=Money(paid={"JPY"})))
    assert [views(part) for part in given_parts] == before


def test_a_cell_of_one_part_is_shared_and_one_of_two_is_fresh() -> None:
    alone, first, second = Cell(events=1), Cell(events=2), Cell(events=3)
    merged = added_up([{((), 0): alone, ((), 1): first}, {((), 1): second}])
    assert merged[((), 0)] is alone  # not copied: what saves ~1 ms per 30-day report
    assert merged[((), 1)] not in (first, second) and merged[((), 1)].events == 5
    assert (first.events, second.events) == (2, 3)


def _converter(factor: Fraction) -> Converter:
    converter = Converter.__new__(Converter)  # no engine: the factors are given
    pair = (factor.numerator, factor.denominator)
    converter.factors = {("EUR", 0): pair, ("EUR", 1): pair}
    converter.loaded = {"EUR"}
    return converter


@given(st.lists(st.tuples(small, small), min_size=1, max_size=4), st.fractions(1, 3))
def test_conversion_replaces_the_cells_it_changes(
    amounts: list[tuple[int, int]], factor: Fraction
) -> None:
    given_cells: Cells = {}
    for i, (gross, refunds) in enumerate(amounts):
        cell = Cell(events=1, gross=gross, refunds=refunds)
        cell.currencies().add(("EUR", i % 2), gross, refunds)
        given_cells[((), i)] = cell
    originals = dict(given_cells)
    before = views(originals)
    converter = _converter(factor)
    converter.convert(given_cells)
    assert views(originals) == before  # a remembered cell is never converted in place
    for key, cell in given_cells.items():
        assert (cell.gross, cell.refunds) == converter._converted(originals[key])
        assert (cell.events, cell.money) == (originals[key].events, originals[key].money)
