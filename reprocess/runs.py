"""A run's state, kept in the engine so that any process can resume it after a crash.

Every save is a compare-and-set on the run document: two processes resuming the same run
cannot both advance it (the loser gets ``StaleWrite`` and stops).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import OpenSearch

from pulse.clock import now_ms as now_ms
from pulse.naming import Names
from reprocess.plan import Plan
from storage import reprocess_index as store

# Phases, in order. A run only moves forward, except rollback (switched -> rolled_back).
PLANNED, REPLAYING, REPLAYED, VERIFIED, SWITCHING, SWITCHED = (
    "planned",
    "replaying",
    "replayed",
    "verified",
    "switching",
    "switched",
)
ROLLING_BACK, ROLLED_BACK, CLEANED, FAILED = "rolling_back", "rolled_back", "cleaned", "failed"
UNFINISHED = (PLANNED, REPLAYING, REPLAYED, VERIFIED, SWITCHING, ROLLING_BACK)


class RunError(RuntimeError):
    """The run cannot do what was asked in its current phase."""


@dataclass
class Run:
    """The mutable view of one run document; ``save`` writes it back with CAS."""

    run_id: str
    plan: Plan
    phase: str = PLANNED
    created_at: int = 0
    offsets: dict[str, int] = field(default_factory=dict)  # next offset to read, per partition
    pending_from: dict[str, int] = field(default_factory=dict)  # last checkpointed batch start
    # The tally lives in batch documents (``reprocess.tallies``, docs/decisions/0133): the
    # state keeps only which of them it committed.
    tally_seq: int = 0  # batch documents below this sequence number are committed
    tally_epochs: list[int] = field(default_factory=list)  # epoch -> first sequence number
    stats: dict[str, int] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    times: dict[str, int] = field(default_factory=dict)  # phase -> epoch ms it was reached
    # Per partition, where the sequential read stopped at the arrival window's end (the first
    # message stamped past it); later positions are fetched from the serving generation.
    stops: dict[str, int] = field(default_factory=dict)
    late_until: int = 0  # the late fetch took positions ingested before this (epoch ms)
    # A slice of a run (``reprocess.workers``): replayed by whichever worker holds its lease.
    kind: str = "run"
    owner: str = ""
    lease_ms: int = 0
    lease_until: int = 0  # every save by the owner extends it by lease_ms
    _doc: store.Versioned | None = None

    @property
    def doc_id(self) -> str:
        return f"run-{self.run_id}"

    @property
    def parent_id(self) -> str:
        """The run this state belongs to (itself, or the run a slice divides)."""
        return self.run_id.split(".", 1)[0]

    def release(self) -> None:
        """Give the lease up (saved with the next ``save``)."""
        self.owner, self.lease_until = "", 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "owner": self.owner,
            "lease_ms": self.lease_ms,
            "lease_until": self.lease_until,
            "run_id": self.run_id,
            "phase": self.phase,
            "created_at": self.created_at,
            "plan": self.plan.to_json(),
            "offsets": self.offsets,
            "pending_from": self.pending_from,
            "tally_seq": self.tally_seq,
            "tally_epochs": self.tally_epochs,
            "stats": self.stats,
            "report": self.report,
            "times": self.times,
            "stops": self.stops,
            "late_until": self.late_until,
        }

    @classmethod
    def from_doc(cls, doc: store.Versioned) -> Run:
        s = doc.source
        return cls(
            s["run_id"],
            Plan.from_json(s["plan"]),
            s["phase"],
            s["created_at"],
            offsets=dict(s.get("offsets", {})),
            pending_from=dict(s.get("pending_from", {})),
            tally_seq=int(s.get("tally_seq", 0)),
            tally_epochs=[int(e) for e in s.get("tally_epochs", [])],
            stats=dict(s.get("stats", {})),
            report=dict(s.get("report", {})),
            times=dict(s.get("times", {})),
            stops=dict(s.get("stops", {})),
            late_until=int(s.get("late_until", 0)),
            kind=s.get("kind", "run"),
            owner=s.get("owner", ""),
            lease_ms=int(s.get("lease_ms", 0)),
            lease_until=int(s.get("lease_until", 0)),
            _doc=doc,
        )

    def save(self, client: OpenSearch, names: Names, phase: str | None = None) -> None:
        if phase is not None and phase != self.phase:
            self.phase = phase
            self.times[phase] = now_ms()
        if self.owner:
            self.lease_until = now_ms() + self.lease_ms
        self._doc = store.write(client, names, self.doc_id, self._doc, self.to_json())

    def count(self, **deltas: int) -> None:
        for key, value in deltas.items():
            self.stats[key] = self.stats.get(key, 0) + value


def create(client: OpenSearch, names: Names, plan: Plan) -> Run:
    """Persist a new run; refuses while another run is unfinished (one switch at a time)."""
    active = unfinished(client, names)
    if active is not None:
        raise RunError(f"run {active.run_id} is {active.phase}: `pulse reprocess resume` it first")
    run = Run(
        uuid.uuid4().hex[:12],
        plan,
        created_at=now_ms(),
        offsets=dict(plan.start_offsets),
        pending_from=dict(plan.start_offsets),
    )
    run.times[PLANNED] = run.created_at
    run.save(client, names)
    return run


def load(client: OpenSearch, names: Names, run_id: str) -> Run:
    doc = store.read(client, names, f"run-{run_id}")
    if doc is None:
        raise RunError(f"no run {run_id}")
    return Run.from_doc(doc)


def all_runs(client: OpenSearch, names: Names) -> list[Run]:
    """Every run, newest first (re-read one by one to get their CAS versions)."""
    return [load(client, names, s["run_id"]) for s in store.search(client, names, "run")]


def unfinished(client: OpenSearch, names: Names) -> Run | None:
    return next((r for r in all_runs(client, names) if r.phase in UNFINISHED), None)


def latest(client: OpenSearch, names: Names, *phases: str) -> Run | None:
    return next((r for r in all_runs(client, names) if not phases or r.phase in phases), None)
