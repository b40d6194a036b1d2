"""One rollup run: changed (merchant, hour) pairs by ingest time -> recompute -> write -> W.

A run, holding the lease (rollups.lease):
1. W_from = the committed watermark (None before the first run: everything is new);
   W_to = run start - visibility margin (docs/decisions/0030).
2. Pairs = (merchant, UTC hour of occurred_at) of raw events with ingested_at in
   (W_from, W_to], over every raw day behind the events alias (late events live in old days),
   plus the pairs of hours that were still open at W_from; only hours closed at W_to
   (hour end <= W_to) are recomputed, open ones wait until they close (compute.changed_pairs).
3. For each chunk of pairs: renew the lease, take ``computed_at`` = now, recompute every bucket
   of those pairs from all their raw events, write those that changed (versioned by
   computed_at), delete the pairs' other documents (combinations that disappeared).
4. Update the pairs' slots of their day packs from the TOTAL documents (rollups.packs).
5. Renew the lease, then move W to W_to by compare-and-set (rollups.state).

A run that dies anywhere before step 5 leaves W where it was, so the next run (by any
replica) recomputes a superset of the same pairs; versioned, deterministic ids make the
overlap harmless: nothing is counted twice.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opensearchpy import OpenSearch

from pulse.naming import Names
from pulse.settings import Settings
from rollups import compute, customers, state
from rollups.compute import Pair
from rollups.lease import Lease, LeaseLost
from rollups.packs import PackWriter
from rollups.writer import RollupWriter
from storage.templates import ensure_templates

log = logging.getLogger("pulse.rollups")

Clock = Callable[[], int]
Progress = Callable[[int, int], None]  # (pairs done, pairs total), after each written chunk


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def default_owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def refresh_seconds(value: str) -> float:
    """An OpenSearch time value ("1s", "500ms", "2m") in seconds."""
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suffix, factor in units:
        if value.endswith(suffix) and value[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(value[: -len(suffix)]) * factor
    raise ValueError(
        f"refresh_interval {value!r} gives no visibility bound: set rollup_visibility_margin_s"
    )


def visibility_margin_ms(settings: Settings) -> int:
    """How far W lags the run start: engine_timeout_s + refresh_interval (+1 s) by default."""
    if settings.rollup_visibility_margin_s is not None:
        return int(settings.rollup_visibility_margin_s * 1000)
    return int((settings.engine_timeout_s + refresh_seconds(settings.refresh_interval) + 1) * 1000)


@dataclass(frozen=True)
class RunReport:
    """What one run did; ``skipped`` says why it did nothing."""

    owner: str
    skipped: str | None = None
    watermark_from: int | None = None
    watermark_to: int | None = None
    pairs: int = 0
    buckets: int = 0
    written: int = 0
    unchanged: int = 0
    superseded: int = 0
    deleted: int = 0
    packs: int = 0
    seconds: float = 0.0


@dataclass
class Totals:
    pairs: int = 0
    buckets: int = 0
    written: int = 0
    unchanged: int = 0
    superseded: int = 0
    deleted: int = 0
    packs: int = 0  # day packs written


class RollupJob:
    """The rollup job of one scheduler replica (its own lease owner id)."""

    def __init__(
        self,
        client: OpenSearch,
        settings: Settings,
        names: Names,
        owner: str | None = None,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.client = client
        self.settings = settings
        self.names = names
        self.clock = clock
        # A lease shorter than a few intervals would lapse between two runs of its holder.
        ttl_s = max(settings.rollup_lease_ttl_s, 3 * settings.rollup_interval_s)
        self.lease = Lease(client, names, owner or default_owner(), int(ttl_s * 1000))
        self.writer = RollupWriter(client, names, settings.generation)
        self.packs = PackWriter(client, names, settings.generation)
        # The served raw data: the read alias holds, per day, the generation readers see
        # (a reprocess swaps days between generations), and every day, however old.
        self.raw = names.events_alias

    @property
    def owner(self) -> str:
        return self.lease.owner

    def bootstrap(self) -> None:
        """Idempotent: templates, the state index's rollups fields, and this month's rollup
        index, so the ``rollups`` alias exists for readers before the first document."""
        ensure_templates(self.client, self.settings, self.names)
        state.ensure_state_index(self.client, self.names)
        self.writer.index_for(self.clock())

    def run_once(
        self, on_chunk: Progress | None = None, through_ms: int | None = None
    ) -> RunReport:
        """One run (module doc). ``through_ms`` overrides W_to (only when nothing is in flight)."""
        started = time.perf_counter()
        now = self.clock()
        if not self.lease.acquire(now):
            return RunReport(self.owner, skipped="lease held by another scheduler")
        prior = state.load(self.client, self.names)
        # Another generation's or an older job's watermark says nothing about our documents.
        current = prior is not None and prior.serves(self.settings.generation)
        w_from = prior.watermark if prior is not None and current else None
        w_to = through_ms if through_ms is not None else now - visibility_margin_ms(self.settings)
        if w_from is not None and w_to <= w_from:
            return RunReport(self.owner, skipped="watermark is current", watermark_from=w_from)
        pairs = compute.changed_pairs(
            self.client, self.raw, w_from, w_to, self.settings.rollup_page_size
        )
        totals = self.recompute_pairs(pairs, on_chunk)
        # First purchases of everything ingested in (W_from, W_to], before W moves past it.
        customers.observe_ingested(self.client, self.settings, self.names, w_from, w_to)
        self._commit(prior, w_to, totals)
        return RunReport(
            self.owner,
            watermark_from=w_from,
            watermark_to=w_to,
            pairs=totals.pairs,
            buckets=totals.buckets,
            written=totals.written,
            unchanged=totals.unchanged,
            superseded=totals.superseded,
            deleted=totals.deleted,
            packs=totals.packs,
            seconds=time.perf_counter() - started,
        )

    def recompute_pairs(
        self,
        pairs: Sequence[Pair],
        on_chunk: Progress | None = None,
        fenced: bool = True,
        derive_packs: bool = True,
    ) -> Totals:
        """Recompute, write and prune the given pairs chunk by chunk, then update their day
        pack slots (every one: a run that died after writing left them behind).

        ``fenced`` renews the lease before every chunk (scheduled runs); a backfill runs
        unfenced: its versioned writes cannot undo a newer computation either.
        ``derive_packs=False`` leaves the packs to the caller (a backfill that also prunes).
        """
        totals = Totals(pairs=len(pairs))
        size = self.settings.rollup_pairs_per_query
        for offset in range(0, len(pairs), size):
            chunk = pairs[offset : offset + size]
            if fenced:
                self.lease.renew(self.clock())
            computed_at = self.clock()  # taken before reading: the version orders snapshots
            buckets = compute.recompute(
                self.client, self.raw, chunk, self.settings.rollup_page_size
            )
            written = self.writer.write(buckets, computed_at)
            totals.buckets += len(buckets)
            totals.written += written.written
            totals.unchanged += written.unchanged
            totals.superseded += written.superseded
            totals.deleted += self.writer.delete_stale(chunk, written.ids, computed_at)
            if on_chunk is not None:
                on_chunk(offset + len(chunk), len(pairs))
        if derive_packs:
            if fenced:
                self.lease.renew(self.clock())
            totals.packs = self.packs.derive(pairs)
        return totals

    def _commit(self, prior: state.State | None, w_to: int, totals: Totals) -> None:
        self.lease.renew(self.clock())
        new = state.State(self.settings.generation, w_to, None)
        fields = {
            "updated_at": self.clock(),
            "owner": self.owner,
            "term": self.lease.term,
            "pairs": totals.pairs,
            "buckets": totals.buckets,
        }
        try:
            state.commit(self.client, self.names, prior, new, fields)
        except state.StateConflict as exc:
            raise LeaseLost(str(exc)) from exc


def catch_up(client: OpenSearch, settings: Settings, names: Names) -> RunReport:
    """Roll up everything ingested so far, in one run, for benches and tests.

    Refreshes the raw indices and then uses W_to = now, which is exact only while no indexer
    is writing (an in-flight bulk could become visible later): never use it next to a live
    indexer; the scheduler's margin exists for that case.
    """
    job = RollupJob(client, settings, names)
    job.bootstrap()
    client.indices.refresh(index=job.raw, allow_no_indices=True, ignore_unavailable=True)
    report = job.run_once(through_ms=job.clock())
    job.lease.release()
    if report.skipped and report.skipped != "watermark is current":
        raise LeaseLost(f"catch_up could not run: {report.skipped}")
    return report
