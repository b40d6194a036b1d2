"""Where a day's events go, and which existing indices may already hold one of its events.

- The generation of a day comes from ``generation_for`` (the reprocess registry's resolver in
  production, a constant otherwise).
- The write target is ilm's ``write_target`` (the day's write alias), asked once per batch per
  day and never cached longer: ilm may delete a day past retention, and a bulk to a missing
  alias would auto-create a plain index under the alias's name. ``read_alias=False`` keeps a
  day created here out of the read alias (a reprocessing run's generation, swapped in later).
- Indices that may hold an earlier copy of an event (docs/decisions/0011): the day's sealed
  backing indices (ilm's ``sealed_indices``) and every index of the neighbouring days within
  ``conflict_days``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import date, timedelta

from opensearchpy import OpenSearch

from pulse.naming import Names
from storage import templates

EPOCH = date(1970, 1, 1)
LISTING_TTL_S = 5.0
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
    """Index resolution for the writer; listings of neighbouring days are cached briefly."""

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
        self._listing: dict[int, tuple[float, list[str]]] = {}

    def write_targets(self, days: set[int]) -> dict[int, str]:
        """The write alias of each day, created if missing (called once per attempt)."""
        out: dict[int, str] = {}
        for day in days:
            when = day_date(day)
            out[day] = templates.write_target(
                self.client, self.names, self.generation_for(when), when, self.read_alias
            )
            self._listing.pop(day, None)  # the day has an index now: list it afresh
        return out

    def earlier_copies(self, day: int) -> list[str]:
        """Concrete indices that may hold an earlier copy of an event of ``day``."""
        when = day_date(day)
        out = templates.sealed_indices(self.client, self.names, self.generation_for(when), when)
        for other in range(day - self.conflict_days, day + self.conflict_days + 1):
            if other != day:
                out.extend(self._indices_of(other))
        return out

    def _indices_of(self, day: int) -> list[str]:
        """Every concrete index of ``day`` (all backing indices, or a legacy plain index)."""
        cached = self._listing.get(day)
        if cached is not None and time.monotonic() - cached[0] < LISTING_TTL_S:
            return cached[1]
        when = day_date(day)
        pattern = self.names.raw_index(self.generation_for(when), when) + "*"
        rows = self.client.cat.indices(index=pattern, format="json", h="index")
        found = sorted(str(row["index"]) for row in rows or [])
        self._listing[day] = (time.monotonic(), found)
        return found
