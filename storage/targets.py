"""Where a day's events go, and which existing indices may already hold one of its events.

- The generation of a day comes from ``generation_for`` (the reprocess registry's resolver in
  production, a constant otherwise).
- The write target is ilm's ``write_target`` (the day's write alias), checked before every
  bulk attempt and never cached: ilm may delete a day past retention, and a bulk to a missing
  alias would auto-create a plain index under the alias's name. All of a batch's days are
  checked by one request (``HEAD`` of all their names: found only if every one is), and only
  when one is missing is each day ensured on its own. ``read_alias=False`` keeps a day created
  here out of the read alias (a reprocessing run's generation, swapped in later).
- Indices that may hold an earlier copy of an event (docs/decisions/0011): the day's sealed
  backing indices (ilm's ``sealed_indices``) and every index of the neighbouring days within
  ``conflict_days``. All of a batch's days and their neighbours are listed by one request,
  asked afresh for every batch: no cache, so a rollover or a deletion made before a batch's
  lookup is always in it (docs/decisions/0306).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date, timedelta

from opensearchpy import OpenSearch

from pulse.naming import Names
from storage import templates

EPOCH = date(1970, 1, 1)
_DAY_IN_NAME = re.compile(r"-(\d{4})\.(\d{2})\.(\d{2})(?:-\d+)?$")


def day_date(day: int) -> date:
    return EPOCH + timedelta(days=day)


def day_of_index(index: str) -> int | None:
    """The UTC day number of a raw index or backing index name (None if it has no day)."""
    match = _DAY_IN_NAME.search(index)
    if match is None:
        return None
    y, m, d = (int(g) for g in match.groups())
    return (date(y, m, d) - EPOCH).days


class Targets:
    """Index resolution for the writer: a few requests per batch, whatever its days."""

    def __init__(
        self,
        client: OpenSearch,
        names: Names,
        generation_for: Callable[[date], str],
        conflict_days: int,
        read_alias: bool = True,
    ) -> None:
        self.client = client
        self.names = names
        self.generation_for = generation_for
        self.conflict_days = conflict_days
        self.read_alias = read_alias  # False: a day created here stays out of ``events``

    def day_name(self, day: int) -> str:
        """The day's write alias in the generation that receives it (or a legacy plain index)."""
        when = day_date(day)
        return self.names.raw_index(self.generation_for(when), when)

    def write_targets(self, days: set[int]) -> dict[int, str]:
        """The write alias of each day, created if missing (called once per attempt)."""
        out = {day: self.day_name(day) for day in days}
        # One HEAD for all: true for aliases and legacy plain indices, false if any is missing.
        if not out or self.client.indices.exists(index=list(out.values())):
            return out
        for day in days:
            when = day_date(day)
            out[day] = templates.write_target(
                self.client, self.names, self.generation_for(when), when, self.read_alias
            )
        return out

    def earlier_copies(self, day: int) -> list[str]:
        """Concrete indices that may hold an earlier copy of an event of ``day``."""
        return self.earlier_copies_of([day])[day]

    def earlier_copies_of(self, days: Iterable[int]) -> dict[int, list[str]]:
        """``earlier_copies`` of each of ``days`` (its sealed backing indices, then every index
        of each neighbouring day within ``conflict_days``, in day order), from one listing."""
        days = set(days)
        reach = self.conflict_days
        around = sorted({o for d in days for o in range(d - reach, d + reach + 1)})
        names = {o: self.day_name(o) for o in around}
        listing = templates.indices_and_aliases(self.client, [n + "*" for n in names.values()])
        ordered = sorted(listing)
        of_day = {o: [i for i in ordered if i.startswith(n)] for o, n in names.items()}
        out: dict[int, list[str]] = {}
        for day in days:
            members = templates.alias_members(listing, names[day])
            found = sorted(index for index, is_write in members.items() if not is_write)
            for other in range(day - reach, day + reach + 1):
                if other != day:
                    found.extend(of_day[other])
            out[day] = found
        return out
