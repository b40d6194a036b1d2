"""The replay's tally as batch documents: one per checkpoint, never rewritten, summed per day.

What a run read (per merchant and day, ``reprocess.tally``) used to live inside the run
document, rewritten at every checkpoint: its size grew with merchants x days, too large for
millions of merchants (docs/decisions/0133). Instead every checkpoint writes the rows of the
events it tallies as one *batch document* in the bookkeeping index, named after the run state
that owns it (the run or a worker's slice), the owner's *epoch* and the checkpoint's sequence
number. A batch document holds at most ``reprocess_batch_docs`` rows (one per distinct
merchant and day of at most that many events), whatever the number of merchants.

Exactly once, with the write-ahead rule of decision 0090:
- the batch document is written *before* the checkpoint's compare-and-set save of the owner;
  that save (offsets past the batch, ``tally_seq`` + 1) is what commits it;
- a crash between the two leaves a document whose sequence number the owner never committed;
  the resumed replay reads those records again as fresh (positions at or past
  ``run.offsets``; positions below are re-written, never tallied again) and tallies them in a
  document of its own;
- every process that starts tallying for an owner first opens a new epoch (saved with
  compare-and-set, ``tally_epochs`` = the sequence number it starts at). Its documents carry
  the epoch in their name, so a worker that lost its lease and is still running can never
  overwrite what the taker-over committed; it can only add documents that are never committed.
A document (owner, epoch e, seq k) counts iff ``tally_epochs[e] <= k <`` the next epoch's
start (or the owner's ``tally_seq`` for the last epoch). ``day_rows`` sums the committed
documents of one day, a page of documents at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from opensearchpy import OpenSearch

from pulse.naming import Names
from reprocess import runs
from reprocess.runs import Run
from reprocess.tally import Row, Tally
from storage import reprocess_index as store

KIND = "tally"


def doc_id(owner: str, epoch: int, seq: int) -> str:
    return f"tally-{owner}-e{epoch:05d}-{seq:010d}"


class Recorder:
    """Writes one owner's batch documents from one process (one epoch)."""

    def __init__(self, client: OpenSearch, names: Names, run: Run) -> None:
        self.client, self.names, self.run = client, names, run
        self._epoch: int | None = None

    def record(self, tally: Tally, chunk_rows: int = 0) -> None:
        """Write ``tally`` as the next batch document(s) of the owner, uncommitted until the
        owner's next save. Call before changing anything else in the run state: opening the
        epoch saves it. ``chunk_rows`` > 0 splits it into documents of at most that many
        rows (the reindex tallies a whole day at once)."""
        if not tally.days:
            return
        if self._epoch is None:
            self.run.tally_epochs.append(self.run.tally_seq)
            self.run.save(self.client, self.names)  # compare-and-set: one writer per epoch
            self._epoch = len(self.run.tally_epochs) - 1
        for piece in _chunks(tally, chunk_rows):
            self._write(piece)

    def _write(self, tally: Tally) -> None:
        assert self._epoch is not None
        seq = self.run.tally_seq
        name = doc_id(self.run.run_id, self._epoch, seq)
        source: dict[str, Any] = {
            "kind": KIND,
            "run_id": self.run.parent_id,
            "owner": self.run.run_id,
            "epoch": self._epoch,
            "seq": seq,
            "tally_key": name,
            "tally_days": sorted(tally.days),
            "rows": tally.to_json(),
        }
        store.put(self.client, self.names, name, source)
        self.run.tally_seq = seq + 1


def _chunks(tally: Tally, rows: int) -> Iterator[Tally]:
    if rows <= 0:
        yield tally
        return
    piece, size = Tally(), 0
    for day, merchants in tally.days.items():
        for merchant, row in merchants.items():
            piece.add(day, merchant, row)
            size += 1
            if size >= rows:
                yield piece
                piece, size = Tally(), 0
    if size:
        yield piece


def committed(owner: Run, epoch: int, seq: int) -> bool:
    """Whether the owner's saved state committed batch document (epoch, seq)."""
    starts = owner.tally_epochs
    if not 0 <= epoch < len(starts):
        return False
    end = starts[epoch + 1] if epoch + 1 < len(starts) else owner.tally_seq
    return starts[epoch] <= seq < end


class Reader:
    """The committed tally of a run (its own documents and its slices'), one day at a time."""

    def __init__(self, client: OpenSearch, names: Names, run_id: str) -> None:
        self.client, self.names, self.run_id = client, names, run_id
        self._owners: dict[str, Run] = {}
        self.documents = 0  # committed documents read (a document of two days counts twice)
        self.ignored: set[str] = set()  # documents never committed (a crash before the save)

    def day_rows(self, day: str) -> dict[str, Row]:
        """merchant -> row of ``day``: memory grows with the day's merchants, not with the
        number of batches (documents are read a page at a time)."""
        out: dict[str, Row] = {}
        filters = {"kind": KIND, "run_id": self.run_id, "tally_days": day}
        for doc in store.scan(self.client, self.names, filters):
            if not committed(self._owner(doc["owner"]), int(doc["epoch"]), int(doc["seq"])):
                self.ignored.add(doc["tally_key"])
                continue
            self.documents += 1
            for merchant, row in doc["rows"].get(day, {}).items():
                current = out.setdefault(merchant, [0, 0, 0, 0])
                for i, value in enumerate(row):
                    current[i] += value
        return out

    def _owner(self, owner: str) -> Run:
        """The owner's saved state, read once per reader (verification runs after every
        owner stopped tallying)."""
        if owner not in self._owners:
            self._owners[owner] = runs.load(self.client, self.names, owner)
        return self._owners[owner]


def total(client: OpenSearch, names: Names, run: Run) -> Tally:
    """The whole committed tally of ``run`` (small ranges: tests and reports)."""
    reader = Reader(client, names, run.parent_id)
    return Tally({d.day: reader.day_rows(d.day) for d in run.plan.days})


def delete(client: OpenSearch, names: Names, run_id: str) -> int:
    """Drop a finished run's batch documents (``pulse reprocess cleanup``)."""
    return store.delete(client, names, {"kind": KIND, "run_id": run_id})
