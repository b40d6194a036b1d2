"""The rates file and the rate rule (storage.fx), without an engine."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest

from storage import fx

FILE = """date,currency,per_usd
2024-03-01,EUR,0.920
2024-03-05,EUR,0.91
2024-03-20,EUR,0.93
2024-03-01,JPY,150.125
"""


def test_parse_keeps_exact_decimals_and_one_spelling() -> None:
    rates = fx.parse_csv(FILE + "2024-03-01,EUR,0.92\n")  # same value, other spelling: fine
    assert [(r.day, r.currency, r.per_usd) for r in rates] == [
        (date(2024, 3, 1), "EUR", "0.92"),
        (date(2024, 3, 5), "EUR", "0.91"),
        (date(2024, 3, 20), "EUR", "0.93"),
        (date(2024, 3, 1), "JPY", "150.125"),
    ]
    assert rates[0].doc_id == "2024-03-01:EUR"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("day,currency,rate\n", "line 1: the header"),
        ("date,currency,per_usd\n2024-3-1,EUR,1\n", "line 2: date"),
        ("date,currency,per_usd\n2024-03-01,eur,1\n", "ISO 4217"),
        ("date,currency,per_usd\n2024-03-01,EUR,0\n", "positive"),
        ("date,currency,per_usd\n2024-03-01,EUR,x\n", "not a number"),
        ("date,currency,per_usd\n2024-03-01,USD,2\n", "USD is 1"),
        ("date,currency,per_usd\n2024-03-01,EUR,1,2\n", "3 fields"),
        ("date,currency,per_usd\n2024-03-01,EUR,1\n2024-03-01,EUR,2\n", "line 3: EUR"),
    ],
)
def test_bad_files_name_the_line(text: str, words: str) -> None:
    with pytest.raises(fx.RatesFileError, match=words):
        fx.parse_csv(text)


def test_the_latest_rate_at_most_seven_days_old() -> None:
    table = fx.table(r.doc() for r in fx.parse_csv(FILE))
    assert table.per_usd("EUR", date(2024, 3, 4)) == Fraction("0.92")
    assert table.per_usd("EUR", date(2024, 3, 5)) == Fraction("0.91")
    assert table.per_usd("EUR", date(2024, 3, 12)) == Fraction("0.91")  # 7 days old: used
    with pytest.raises(fx.RateMissing) as missing:
        table.per_usd("EUR", date(2024, 3, 13))  # 8 days old: not
    assert (missing.value.currency, missing.value.day) == ("EUR", date(2024, 3, 13))
    with pytest.raises(fx.RateMissing):
        table.per_usd("EUR", date(2024, 2, 29))  # nothing on or before
    assert table.per_usd("USD", date(1999, 1, 1)) == 1  # by definition
    assert table.factor("EUR", "JPY", date(2024, 3, 1)) == Fraction("150.125") / Fraction("0.92")
    assert table.factor("EUR", "EUR", date(1999, 1, 1)) == 1  # no rate needed
