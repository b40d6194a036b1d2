"""Day packs: each (merchant, UTC day)'s TOTAL documents folded into one document.

A 30-day hourly report with no filter or grouping needs 720 merchant-hour totals; read as
720 documents, fetching them was most of the report's engine time (decision 0049). The pack
holds the same numbers in 24-slot arrays (``storage.rollup_schema``), so the report reads 31.

Packs are *derived* from the stored TOTAL documents, never from a writer's memory: after a
writer has written (or deleted) the TOTAL documents of some (merchant, hour) pairs, it
updates those hours' slots of their days' packs. Writers may overlap (the scheduled job and
an unfenced backfill), so a pack is updated by compare-and-set: read the pack (its seq_no),
*then* read the TOTAL documents of the slots to update, then write the pack only if it is
still the one read (``if_seq_no``), else start over. Per slot, whichever update writes last
read that hour's TOTAL document after every write that preceded its pack read, and an update
that read it earlier fails its compare-and-set; an update of other slots copies the slot
from the pack it read, which is current or the update fails. So when writers are done, every
slot equals its TOTAL document. A missing pack is derived from all 24 hours (the first
derivation of a day, and after an upgrade from packless documents). While a pair is being
rewritten its slot may lag, but that hour is not servable then (its raw events arrived after
W, or it is held): readers use a slot only for hours ``rollups.state`` says are served.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch, helpers
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random

from pulse.naming import Names
from storage import rollup_schema as rs

DayKey = tuple[str, int]  # (merchant, start of the UTC day)
DAYS_PER_BATCH = 200  # packs per round (and up to 200 x 24 TOTAL ids per mget)
HOURS = 24


class PackConflict(RuntimeError):
    """Packs still changed under this derivation after every retry."""


@dataclass(frozen=True)
class Stored:
    """A pack as read: its source and compare-and-set token (None when absent)."""

    source: dict[str, Any] | None
    cas: tuple[int, int] | None


def slots_of(pairs: Iterable[tuple[str, int]]) -> dict[DayKey, frozenset[int]]:
    """(merchant, UTC day) -> the hour slots (0..23) of the given (merchant, hour) pairs."""
    out: dict[DayKey, set[int]] = {}
    for merchant, hour in pairs:
        day = rs.day_start(hour)
        out.setdefault((merchant, day), set()).add((hour - day) // rs.HOUR_MS)
    return {key: frozenset(slots) for key, slots in sorted(out.items())}


def pack_doc(
    merchant_id: str,
    day_ms: int,
    totals: dict[int, dict[str, Any]],
    slots: Iterable[int],
    base: dict[str, Any] | None,
) -> dict[str, Any]:
    """The pack ``base`` (None: all zeros) with ``slots`` set from the TOTAL documents'
    sources keyed by slot (a slot without one is 0: the hour has no events)."""
    old = (base or {}).get(rs.PACK, {})
    hours: dict[str, Any] = {f: list(old.get(f) or [0] * HOURS) for f in rs.PACK_FIELDS}
    codes = list(old.get(rs.CURRENCY) or [rs.NO_MONEY] * HOURS)
    multi = dict(old.get(rs.MONEY) or {})
    for slot in slots:
        doc = totals.get(slot, {})
        for field in rs.PACK_FIELDS:
            hours[field][slot] = int(doc.get(field, 0))
        money = doc.get(rs.MONEY) or {}
        codes[slot] = rs.slot_code(money)
        multi.pop(str(slot), None)
        if codes[slot] == rs.MULTI:  # only hours with several currencies pay for the detail
            multi[str(slot)] = money
    hours[rs.CURRENCY] = codes
    if multi:
        hours[rs.MONEY] = dict(sorted(multi.items(), key=lambda kv: int(kv[0])))
    return {rs.MERCHANT: merchant_id, rs.LEVEL: rs.LEVEL_DAY, rs.DAY: day_ms, rs.PACK: hours}


class PackWriter:
    """Derives and stores the day packs of one generation's rollup indices."""

    def __init__(self, client: OpenSearch, names: Names, generation: str) -> None:
        self.client = client
        self.names = names
        self.generation = generation

    def derive(self, pairs: Iterable[tuple[str, int]]) -> int:
        """Bring the pack slots of ``pairs`` in line with their TOTAL documents; packs
        written."""
        wanted = list(slots_of(pairs).items())
        return sum(
            self._derive_batch(dict(wanted[i : i + DAYS_PER_BATCH]))
            for i in range(0, len(wanted), DAYS_PER_BATCH)
        )

    @retry(
        retry=retry_if_exception_type(PackConflict),
        stop=stop_after_attempt(8),
        wait=wait_random(0, 0.05),
        reraise=True,
    )
    def _derive_batch(self, wanted: dict[DayKey, frozenset[int]]) -> int:
        stored = self._packs(list(wanted))  # first: a pack written after this read fails our CAS
        # A missing pack is derived whole: the day may have hours written before packs existed.
        slots = {k: s if stored[k].source else frozenset(range(HOURS)) for k, s in wanted.items()}
        totals = self._totals(slots)
        actions = []
        for key, update in slots.items():
            if key not in totals and stored[key].source is None:
                continue  # no TOTAL documents and no pack: a missing pack reads as zeros
            doc = pack_doc(*key, totals.get(key, {}), update, stored[key].source)
            if stored[key].source != doc:
                actions.append(self._action(key, stored[key], doc))
        conflicts = self._write(actions)
        if conflicts:
            # Re-derive them all: only the conflicting ones can be wrong, but a batch is cheap.
            raise PackConflict(f"{conflicts} day packs changed while being derived")
        return len(actions)

    def _index(self, day_ms: int) -> str:
        return rs.index_for(self.names, self.generation, day_ms)

    def _packs(self, keys: list[DayKey]) -> dict[DayKey, Stored]:
        docs = [{"_index": self._index(d), "_id": rs.pack_id(m, d)} for m, d in keys]
        found = self._mget(docs)
        return {
            key: Stored(doc.get("_source"), (doc["_seq_no"], doc["_primary_term"]))
            if doc.get("found")
            else Stored(None, None)
            for key, doc in zip(keys, found, strict=True)
        }

    def _totals(
        self, slots: dict[DayKey, frozenset[int]]
    ) -> dict[DayKey, dict[int, dict[str, Any]]]:
        """The TOTAL documents' counts of the given slots, per day key and slot."""
        wanted = [(key, slot) for key, update in slots.items() for slot in sorted(update)]
        docs = [
            {
                "_index": self._index(day),
                "_id": rs.doc_id(merchant, day + slot * rs.HOUR_MS, rs.TOTAL),
                "_source": [*rs.PACK_FIELDS, rs.MONEY],
            }
            for (merchant, day), slot in wanted
        ]
        out: dict[DayKey, dict[int, dict[str, Any]]] = {}
        for (key, slot), doc in zip(wanted, self._mget(docs), strict=True):
            if doc.get("found"):
                out.setdefault(key, {})[slot] = doc["_source"]
        return out

    def _mget(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Documents in order; one whose monthly index does not exist reads as not found."""
        found: list[dict[str, Any]] = self.client.mget(body={"docs": docs})["docs"]
        for doc in found:
            error = doc.get("error")
            if error and error.get("type") != "index_not_found_exception":
                raise RuntimeError(f"reading rollup documents failed: {error}")
        return found

    def _action(self, key: DayKey, stored: Stored, doc: dict[str, Any]) -> dict[str, Any]:
        merchant, day = key
        action: dict[str, Any] = {
            "_index": self._index(day),
            "_id": rs.pack_id(merchant, day),
            "_source": doc,
        }
        if stored.cas is None:
            action["_op_type"] = "create"  # fails if a concurrent derivation created it first
        else:
            action["_op_type"] = "index"
            action["if_seq_no"], action["if_primary_term"] = stored.cas
        return action

    def _write(self, actions: list[dict[str, Any]]) -> int:
        """Write the packs; how many lost a compare-and-set (409). Other failures raise."""
        conflicts = 0
        for ok, item in self._bulk(actions):
            if ok:
                continue
            if next(iter(item.values())).get("status") == 409:
                conflicts += 1
            else:
                raise RuntimeError(f"writing a day pack failed: {item}")
        return conflicts

    def _bulk(self, actions: list[dict[str, Any]]) -> Iterator[tuple[bool, Any]]:
        if not actions:
            return iter(())
        results: Iterator[tuple[bool, Any]] = helpers.streaming_bulk(
            self.client, actions, chunk_size=1000, raise_on_error=False, max_retries=3
        )
        return results
