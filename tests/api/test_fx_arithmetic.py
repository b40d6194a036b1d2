"""api.fx converts in integers what it defines with Fractions: the same answer, to the unit."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from api.cells import Cell, Money
from api.fx import Converter, half_even

amounts = st.integers(min_value=-(10**15), max_value=10**15)
factors = st.fractions(min_value=Fraction(1, 10**6), max_value=10**6, max_denominator=10**8)


@given(amounts, st.integers(min_value=1, max_value=10**9))
def test_half_even_is_round_of_the_fraction(numerator: int, denominator: int) -> None:
    assert half_even(numerator, denominator) == round(Fraction(numerator, denominator))


def test_half_even_breaks_ties_to_even_on_both_sides_of_zero() -> None:
    assert [half_even(n, 2) for n in (-5, -3, -1, 1, 3, 5)] == [-2, -2, 0, 0, 2, 2]


@given(st.lists(st.tuples(amounts, amounts, factors), min_size=0, max_size=6))
def test_a_cell_converts_to_the_rounded_exact_sum(parts: list[tuple[int, int, Fraction]]) -> None:
    money = Money()
    converter = Converter.__new__(Converter)  # only the factors are used by _converted
    converter.factors = {}
    for day, (gross, refunds, factor) in enumerate(parts):
        money.amounts[("EUR", day)] = [gross, refunds]
        converter.factors[("EUR", day)] = (factor.numerator, factor.denominator)
    cell = Cell(money=money)
    gross, refunds = converter._converted(cell)
    assert gross == round(sum((Fraction(g) * f for g, _, f in parts), Fraction(0)))
    assert refunds == round(sum((Fraction(r) * f for _, r, f in parts), Fraction(0)))
