"""Exchange rates: the engine-side index ``Names.fx_index`` and the rule that picks a rate.

A rate is "units of ``currency`` per 1 USD on a UTC date" (DESIGN.md, ``pulse fx load``,
header ``date,currency,per_usd``). One document per (date, currency), ``_id`` = ``date:currency``,
so loading the same file again changes nothing and a corrected rate replaces the old one.
``per_usd`` is stored as the decimal text it was loaded from (a keyword) and read back as an
exact ``Fraction``: a conversion never inherits a binary float's error (decision 0201).

Every ``load`` ends by writing a fresh random ``version`` to the document ``VERSION_ID`` of the
same index, after the rates it wrote are searchable: the API keeps the rates it read under the
version it read with them and reads that one small document with the rollup state (one
``mget``, decision 0260), so a load is visible to the next request and unchanged rates cost
no search. Rates written any other way would go unnoticed by that cache: ``load`` is the only
writer.

The rule (``RateTable.per_usd``): for a UTC day D, the latest rate dated on or before D and at
most ``MAX_AGE_DAYS`` before it; none is a ``RateMissing`` naming the currency and D. USD is 1
by definition and needs no row.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from itertools import pairwise
from typing import Any

from opensearchpy import OpenSearch, helpers

from pulse.naming import Names
from storage import paging
from storage.templates import ensure_index

USD = "USD"
MAX_AGE_DAYS = 7
HEADER = ("date", "currency", "per_usd")
CURRENCY_RE = re.compile(r"[A-Z]{3}")
MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "date": {"type": "date", "format": "strict_date"},
        "currency": {"type": "keyword"},
        "per_usd": {"type": "keyword"},  # exact decimal text; see the module docstring
        "version": {"type": "keyword", "index": False},  # only in the VERSION_ID document
    },
}
VERSION_ID = "rates.version"  # not a rate's id (those are date:currency)
RATES_ONLY: dict[str, Any] = {"exists": {"field": "currency"}}  # every document but the version
PAGE = 10_000


class RatesFileError(ValueError):
    """A rates file that cannot be loaded; the message names the line."""


@dataclass(frozen=True)
class Rate:
    day: date
    currency: str
    per_usd: str  # the decimal as written (normalized), e.g. "0.9213"

    @classmethod
    def of(cls, day: date, currency: str, per_usd: Decimal) -> Rate:
        """A rate whose value is spelled as a loaded file's would be (one spelling)."""
        return cls(day, currency, _text(per_usd))

    @property
    def doc_id(self) -> str:
        return f"{self.day.isoformat()}:{self.currency}"

    def doc(self) -> dict[str, str]:
        return {"date": self.day.isoformat(), "currency": self.currency, "per_usd": self.per_usd}


class RateMissing(LookupError):
    """No usable rate for a currency on a UTC day."""

    def __init__(self, currency: str, day: date) -> None:
        super().__init__(f"no {currency} rate for {day.isoformat()}")
        self.currency = currency
        self.day = day


def parse_csv(text: str) -> list[Rate]:
    """The rates of a ``date,currency,per_usd`` file (RatesFileError on the first bad line;
    nothing is loaded from a file with one). A (date, currency) given twice must agree."""
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None or tuple(h.strip() for h in header) != HEADER:
        raise RatesFileError(f"line 1: the header must be {','.join(HEADER)}")
    out: dict[tuple[date, str], Rate] = {}
    for number, row in enumerate(rows, start=2):
        if not row or not "".join(row).strip():
            continue
        rate = _row(number, row)
        seen = out.get((rate.day, rate.currency))
        if seen is not None and seen.per_usd != rate.per_usd:
            raise RatesFileError(f"line {number}: {rate.currency} on {rate.day} given twice")
        out[(rate.day, rate.currency)] = rate
    return sorted(out.values(), key=lambda r: (r.currency, r.day))


def _row(number: int, row: list[str]) -> Rate:
    if len(row) != len(HEADER):
        raise RatesFileError(f"line {number}: expected 3 fields, got {len(row)}")
    day_text, currency, value = (v.strip() for v in row)
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        raise RatesFileError(f"line {number}: date {day_text!r} is not YYYY-MM-DD") from None
    if not CURRENCY_RE.fullmatch(currency):
        raise RatesFileError(f"line {number}: currency {currency!r} is not an ISO 4217 code")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise RatesFileError(f"line {number}: per_usd {value!r} is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise RatesFileError(f"line {number}: per_usd must be a positive number")
    if currency == USD and amount != 1:
        raise RatesFileError(f"line {number}: USD is 1 per USD by definition")
    return Rate.of(day, currency, amount)


def _text(amount: Decimal) -> str:
    """One spelling per value ("0.920" and "0.92" are one rate), never an exponent."""
    normal = amount.normalize()
    return format(normal, "f")


@dataclass
class LoadResult:
    new: int = 0
    changed: int = 0
    unchanged: int = 0


def ensure_rates_index(client: OpenSearch, names: Names) -> None:
    ensure_index(client, names.fx_index)
    client.indices.put_mapping(index=names.fx_index, body=MAPPING)


def load(client: OpenSearch, names: Names, rates: list[Rate]) -> LoadResult:
    """Store the rates; only new or different ones are written (re-loading changes nothing)."""
    ensure_rates_index(client, names)
    result = LoadResult()
    changed: list[Rate] = []
    for start in range(0, len(rates), 1000):
        batch = rates[start : start + 1000]
        found = client.mget(index=names.fx_index, body={"ids": [r.doc_id for r in batch]})
        for rate, doc in zip(batch, found["docs"], strict=True):
            if not doc.get("found"):
                result.new += 1
            elif doc["_source"].get("per_usd") != rate.per_usd:
                result.changed += 1
            else:
                result.unchanged += 1
                continue
            changed.append(rate)
    actions = ({"_index": names.fx_index, "_id": r.doc_id, "_source": r.doc()} for r in changed)
    helpers.bulk(client, actions, refresh="wait_for", chunk_size=1000)
    # After the rates are searchable (wait_for): a reader that sees this version finds them.
    client.index(index=names.fx_index, id=VERSION_ID, body={"version": uuid.uuid4().hex})
    return result


def version_of(found: dict[str, Any]) -> str | None:
    """The version an ``mget`` of ``VERSION_ID`` found (None: no index, or rates loaded
    before versions were written: nothing to key a cache on)."""
    if not found.get("found"):
        return None
    version = (found.get("_source") or {}).get("version")
    return str(version) if version else None


def _scan(client: OpenSearch, names: Names, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every rate document matching ``query``, by (currency, date), with search_after."""
    if not client.indices.exists(index=names.fx_index):
        return
    sort = [{"currency": "asc"}, {"date": "asc"}]
    yield from paging.pages(client, names.fx_index, query, sort, PAGE)


@dataclass
class RateTable:
    """Rates per currency, sorted by day, with the 7-day rule."""

    days: dict[str, list[date]] = field(default_factory=dict)
    values: dict[str, list[Fraction]] = field(default_factory=dict)

    def add(self, currency: str, day: date, per_usd: Fraction) -> None:
        self.days.setdefault(currency, []).append(day)
        self.values.setdefault(currency, []).append(per_usd)

    def per_usd(self, currency: str, day: date) -> Fraction:
        """Units of ``currency`` per USD on ``day`` (RateMissing when none applies)."""
        if currency == USD:
            return Fraction(1)
        days = self.days.get(currency, [])
        i = bisect_right(days, day) - 1
        if i < 0 or (day - days[i]).days > MAX_AGE_DAYS:
            raise RateMissing(currency, day)
        return self.values[currency][i]

    def factor(self, currency: str, target: str, day: date) -> Fraction:
        """What one unit of ``currency`` is worth in ``target`` on ``day`` (exact)."""
        if currency == target:
            return Fraction(1)
        return self.per_usd(target, day) / self.per_usd(currency, day)


def table(rows: Iterable[dict[str, Any]]) -> RateTable:
    """A RateTable of stored documents sorted by (currency, date)."""
    out = RateTable()
    for doc in rows:
        out.add(str(doc["currency"]), date.fromisoformat(doc["date"]), Fraction(doc["per_usd"]))
    return out


def rates_for(
    client: OpenSearch, names: Names, currencies: Iterable[str], first: date, last: date
) -> RateTable:
    """The stored rates that can apply to days in [first, last] of these currencies."""
    wanted = sorted(set(currencies) - {USD})
    if not wanted:
        return RateTable()
    window = {"gte": (first - timedelta(days=MAX_AGE_DAYS)).isoformat(), "lte": last.isoformat()}
    query = {"bool": {"filter": [{"terms": {"currency": wanted}}, {"range": {"date": window}}]}}
    return table(_scan(client, names, query))


@dataclass(frozen=True)
class Coverage:
    """One currency's rates: first and last date, how many, and the days inside
    [first, last] no rate applies to (more than MAX_AGE_DAYS after the previous one)."""

    currency: str
    first: date
    last: date
    rates: int
    gaps: tuple[tuple[date, date], ...]

    @property
    def covered_through(self) -> date:
        return self.last + timedelta(days=MAX_AGE_DAYS)


def coverage(client: OpenSearch, names: Names) -> list[Coverage]:
    """Every currency's coverage (``pulse fx status``)."""
    out: list[Coverage] = []
    rates = table(_scan(client, names, RATES_ONLY))
    for currency, days in sorted(rates.days.items()):
        gaps = tuple(
            (a + timedelta(days=MAX_AGE_DAYS + 1), b - timedelta(days=1))
            for a, b in pairwise(days)
            if (b - a).days > MAX_AGE_DAYS + 1
        )
        out.append(Coverage(currency, days[0], days[-1], len(days), gaps))
    return out


def utc_day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()
