"""One rollup run of one worker: its shards' changed (merchant, hour) pairs -> recompute ->
write -> each shard's W -> the served W (docs/decisions/0030, 0220, 0221).

The job is split into ``settings.rollup_shards`` shards by merchant hash (rollups.shards); a
run of one worker (``pulse rollups`` replica):
1. Announce itself, count the live workers, keep its fair share of shards: renew the ones it
   holds, give back extras, claim free (absent or expired) ones.
2. Per held shard, W_from = the shard's W (a shard new to this layout starts at the served W);
   W_to = run start - visibility margin, rounded down to ``rollup_watermark_step_s`` so the
   workers ask for the same windows. Shards already at W_to wait.
3. Per distinct W_from among the pending shards (one in steady state): pairs = (merchant, UTC
   hour of occurred_at) of raw events with ingested_at in (W_from, W_to], plus the pairs of
   hours still open at W_from (compute.changed_pairs), kept for the shards starting there;
   all of them ordered by shard. One worker scans a window, the others read its result
   (rollups.scan).
   Then the first purchases of the pending shards' merchants among the payments ingested in
   (lowest W_from, W_to] are folded in (rollups.customers.observe_ingested, decision 0210).
4. For each chunk of pairs (it may span shards): renew the chunk's shards' leases (one bulk
   compare-and-set), take ``computed_at``, recompute, then fence: drop every bucket of a shard
   whose lease has run out (another worker may own it now) before writing, and before pruning.
5. When a shard's last pair is written: update its pairs' day pack slots, then commit the
   shard's W = W_to by compare-and-set on the shard document (refused once taken over).
6. Publish the served W: the slowest shard's, forward only (rollups.state.publish).

A worker that dies anywhere leaves its unfinished shards' W where they were; once their leases
expire another worker takes them and recomputes a superset of the same pairs. Versioned,
deterministic ids (rollups.writer) make the overlap harmless: nothing is counted twice.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from opensearchpy import OpenSearch

from pulse.naming import Names
from pulse.settings import Settings
from rollups import compute, customers, shards, state
from rollups.compute import Pair
from rollups.lease import LeaseLost
from rollups.packs import PackWriter
from rollups.scan import SharedScan
from rollups.shards import Shard, ShardLeases, fair_share, shard_of, slowest
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
    watermark_from: int | None = None  # the lowest W_from of the shards it ran
    watermark_to: int | None = None
    pairs: int = 0
    buckets: int = 0
    written: int = 0
    unchanged: int = 0
    superseded: int = 0
    deleted: int = 0
    packs: int = 0
    seconds: float = 0.0
    shards: tuple[int, ...] = ()  # the shards this worker held during the run
    committed: tuple[int, ...] = ()  # the shards whose W moved to W_to
    lost: tuple[int, ...] = ()  # shards taken from it mid-run (their work did not count)
    served: int | None = None  # the served W after the run (the slowest shard's)


@dataclass
class Totals:
    pairs: int = 0
    buckets: int = 0
    written: int = 0
    unchanged: int = 0
    superseded: int = 0
    deleted: int = 0
    packs: int = 0  # day packs written
    committed: list[int] = field(default_factory=list)
    lost: set[int] = field(default_factory=set)


class Fence:
    """What a chunk must pass before writing: the leases of the shards it touches (a bulk
    compare-and-set renewal first, the local expiry check right before each write)."""

    def __init__(self, leases: ShardLeases, clock: Clock) -> None:
        self.leases = leases
        self.clock = clock
        self.lost: set[int] = set()

    def renew(self, shards: set[int]) -> None:
        now = self.clock()
        self.lost |= self.leases.renew(shards | set(self.leases.due(now)), now)

    def check(self, shards: set[int]) -> None:
        self.lost |= self.leases.check(shards, self.clock())


class RollupJob:
    """The rollup job of one worker (its own lease owner id): the shards it holds."""

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
        self.shard_count = settings.rollup_shards
        # A lease shorter than a few intervals would lapse between two runs of its holder.
        ttl_s = max(settings.rollup_lease_ttl_s, 3 * settings.rollup_interval_s)
        self.leases = ShardLeases(
            client, names, owner or default_owner(), self.shard_count, int(ttl_s * 1000)
        )
        step = settings.rollup_watermark_step_s
        self.step_ms = int((settings.rollup_interval_s if step is None else step) * 1000)
        self.scan = SharedScan(
            client,
            names,
            self.shard_count,
            self.shard,
            settings.rollup_page_size,
            self.leases.ttl_ms // 2,
        )
        self.writer = RollupWriter(client, names, settings.generation)
        self.packs = PackWriter(client, names, settings.generation)
        # The served raw data: the read alias holds, per day, the generation readers see
        # (a reprocess swaps days between generations), and every day, however old.
        self.raw = names.events_alias

    @property
    def owner(self) -> str:
        return self.leases.owner

    def shard(self, merchant_id: str) -> int:
        return shard_of(merchant_id, self.shard_count)

    def bootstrap(self) -> None:
        """Idempotent: templates, the state index's rollups fields, and this month's rollup
        index, so the ``rollups`` alias exists for readers before the first document."""
        ensure_templates(self.client, self.settings, self.names)
        state.ensure_state_index(self.client, self.names)
        self.writer.index_for(self.clock())

    def release(self) -> None:
        """Give every shard back and leave the worker set (shutdown)."""
        self.leases.release_all()
        self.leases.leave()

    def run_once(
        self,
        on_chunk: Progress | None = None,
        through_ms: int | None = None,
        take_all: bool = False,
    ) -> RunReport:
        """One run (module doc). ``through_ms`` overrides W_to (only when nothing is in flight);
        ``take_all`` claims every free shard whatever the fair share (a one-off catch-up)."""
        started = time.perf_counter()
        now = self.clock()
        docs = shards.read_all(self.client, self.names, self.shard_count)
        workers = 1 if take_all else self.leases.heartbeat(now)
        self.leases.balance(docs, fair_share(self.shard_count, workers), now)
        held = tuple(sorted(self.leases.held))
        if not held:
            return RunReport(self.owner, skipped="every shard is held by another worker")
        w_to = through_ms if through_ms is not None else self._aligned(now)
        w_from = self._starts(docs, held)
        pending = {i for i, w in w_from.items() if w is None or w < w_to}
        if not pending:
            served = self.publish()
            low = min(w for w in w_from.values() if w is not None)
            return RunReport(self.owner, "watermark is current", low, shards=held, served=served)
        starts = [w_from[i] for i in pending]
        after = None if any(w is None for w in starts) else min(w for w in starts if w is not None)
        share = through_ms is None and self.step_ms > 0  # aligned: the others ask the same
        pairs = self._pairs({i: w_from[i] for i in pending}, w_to, share)
        # First purchases of the pending shards' merchants ingested in (W_from, W_to], before
        # any of their W moves (a min: folding from the lowest W_from is harmless).
        mine: dict[str, bool] = {}  # merchant -> in a pending shard (memo)
        customers.observe_ingested(
            self.client, self.settings, self.names, after, w_to,
            lambda m: mine.setdefault(m, shard_of(m, self.shard_count) in pending),
        )  # fmt: skip
        totals = self._run_shards(pending, pairs, w_to, on_chunk)
        served = self.publish()
        return RunReport(
            self.owner,
            watermark_from=after,
            watermark_to=w_to,
            pairs=totals.pairs,
            buckets=totals.buckets,
            written=totals.written,
            unchanged=totals.unchanged,
            superseded=totals.superseded,
            deleted=totals.deleted,
            packs=totals.packs,
            seconds=time.perf_counter() - started,
            shards=held,
            committed=tuple(sorted(totals.committed)),
            lost=tuple(sorted(totals.lost)),
            served=served,
        )

    def _aligned(self, now: int) -> int:
        """W_to of a scheduled run: now - margin, rounded down to the watermark step."""
        w_to = now - visibility_margin_ms(self.settings)
        return w_to - w_to % self.step_ms if self.step_ms > 0 else w_to

    def _pairs(self, starts: dict[int, int | None], w_to: int, share: bool) -> list[Pair]:
        """The pending shards' changed pairs, ordered by shard: one scan per distinct W_from
        (one in steady state; a shard just taken over may add a second), each kept for the
        shards that start there, so no shard recomputes pairs it already rolled up. With
        ``share`` the scan of a window is run once for all workers (rollups.scan)."""
        groups: dict[int | None, set[int]] = {}
        for i, w in starts.items():
            groups.setdefault(w, set()).add(i)
        mine: list[tuple[int, int, str]] = []
        for after, group in groups.items():
            if share:
                found = self.scan.pairs(group, after, w_to, self.clock())
            else:
                found = self.scan.scan(group, after, w_to)
            mine += [(self.shard(m), h, m) for m, h in found if self.shard(m) in group]
        return [(m, h) for _, h, m in sorted(mine)]

    def _starts(self, docs: dict[int, Shard], held: tuple[int, ...]) -> dict[int, int | None]:
        """Each held shard's W_from: its own W, or for a shard new to this layout (no W yet,
        e.g. after ``rollup_shards`` changed) the served W, which every merchant had reached."""
        generation = self.settings.generation
        prior = state.load(self.client, self.names)
        seed = prior.watermark if prior is not None and prior.serves(generation) else None
        out: dict[int, int | None] = {}
        for i in held:
            doc = self.leases.held.get(i, docs[i])
            own = doc.watermark(generation)
            out[i] = own if own is not None or "watermark" in doc.source else seed
        return out

    def _run_shards(
        self, pending: set[int], pairs: list[Pair], w_to: int, on_chunk: Progress | None
    ) -> Totals:
        """Recompute the pending shards' pairs (ordered by shard) and commit each shard's W as
        soon as its last pair is written; shards without pairs commit first."""
        left: dict[int, list[Pair]] = {i: [] for i in pending}
        for pair in pairs:
            left[self.shard(pair[0])].append(pair)
        fence = Fence(self.leases, self.clock)
        totals = Totals()
        self._commit([i for i, ps in left.items() if not ps], w_to, totals, fence)
        remaining = {i: len(ps) for i, ps in left.items() if ps}

        def finished(chunk: Sequence[Pair]) -> None:
            done = []
            for merchant, _ in chunk:
                i = self.shard(merchant)
                remaining[i] -= 1
                if remaining[i] == 0:
                    done.append(i)
            fence.check(set(done))  # the packs are writes too
            held = [i for i in done if i not in fence.lost]
            if held:  # one derivation for every shard this chunk finished
                totals.packs += self.packs.derive([p for i in held for p in left[i]])
            self._commit(held, w_to, totals, fence)

        self.recompute_pairs(pairs, on_chunk, fence, totals=totals, after_chunk=finished)
        totals.lost |= fence.lost
        return totals

    def _commit(self, done: list[int], w_to: int, totals: Totals, fence: Fence) -> None:
        ready = [i for i in done if i not in fence.lost]
        if not ready:
            return
        progress = {"watermark": w_to, "generation": self.settings.generation}
        fence.lost |= self.leases.commit(ready, self.clock(), progress)
        totals.committed += [i for i in ready if i not in fence.lost]

    def publish(self) -> int | None:
        """Serve the slowest shard's W (rollups.state.publish); the served W, None while a
        shard has none yet."""
        docs = shards.read_all(self.client, self.names, self.shard_count).values()
        low = slowest(docs, self.settings.generation)
        if low is None:
            prior = state.load(self.client, self.names)
            return prior.watermark if prior and prior.serves(self.settings.generation) else None
        fields = {"updated_at": self.clock(), "owner": self.owner, "shards": self.shard_count}
        return state.publish(self.client, self.names, self.settings.generation, low, fields)

    def recompute_pairs(
        self,
        pairs: Sequence[Pair],
        on_chunk: Progress | None = None,
        fence: Fence | None = None,
        derive_packs: bool = False,
        totals: Totals | None = None,
        after_chunk: Callable[[Sequence[Pair]], None] | None = None,
    ) -> Totals:
        """Recompute, write and prune the given pairs chunk by chunk.

        With a ``fence`` (scheduled runs) every chunk renews its shards' leases first and
        writes nothing of a shard it no longer holds; a backfill runs unfenced: its versioned
        writes cannot undo a newer computation either. ``derive_packs`` updates the pairs'
        day pack slots at the end (a backfill; the sharded run does it per shard).
        """
        totals = totals if totals is not None else Totals()
        totals.pairs += len(pairs)
        size = self.settings.rollup_pairs_per_query
        for offset in range(0, len(pairs), size):
            chunk = pairs[offset : offset + size]
            self._chunk(chunk, fence, totals)
            if after_chunk is not None:
                after_chunk(chunk)
            if on_chunk is not None:
                on_chunk(offset + len(chunk), len(pairs))
        if derive_packs:
            totals.packs += self.packs.derive(pairs)
        return totals

    def _chunk(self, chunk: Sequence[Pair], fence: Fence | None, totals: Totals) -> None:
        if fence is not None:
            fence.renew({self.shard(m) for m, _ in chunk})
            chunk = [p for p in chunk if self.shard(p[0]) not in fence.lost]
            if not chunk:
                return
        computed_at = self.clock()  # taken before reading: the version orders snapshots
        buckets = compute.recompute(self.client, self.raw, chunk, self.settings.rollup_page_size)
        if fence is not None:  # the read may have outlasted a lease: write only what we hold
            fence.check({self.shard(m) for m, _ in chunk})
            chunk = [p for p in chunk if self.shard(p[0]) not in fence.lost]
            buckets = {k: b for k, b in buckets.items() if self.shard(k[0]) not in fence.lost}
        written = self.writer.write(buckets, computed_at)
        totals.buckets += len(buckets)
        totals.written += written.written
        totals.unchanged += written.unchanged
        totals.superseded += written.superseded
        if fence is not None:
            fence.check({self.shard(m) for m, _ in chunk})
            chunk = [p for p in chunk if self.shard(p[0]) not in fence.lost]
        totals.deleted += self.writer.delete_stale(chunk, written.ids, computed_at)


def catch_up(client: OpenSearch, settings: Settings, names: Names) -> RunReport:
    """Roll up everything ingested so far, in one run over every shard, for benches and tests.

    Refreshes the raw indices and then uses W_to = now, which is exact only while no indexer
    is writing (an in-flight bulk could become visible later): never use it next to a live
    indexer; the scheduler's margin exists for that case. Fails if a worker holds a shard.
    """
    job = RollupJob(client, settings, names)
    job.bootstrap()
    client.indices.refresh(index=job.raw, allow_no_indices=True, ignore_unavailable=True)
    report = job.run_once(through_ms=job.clock(), take_all=True)
    job.release()
    if report.skipped and report.skipped != "watermark is current":
        raise LeaseLost(f"catch_up could not run: {report.skipped}")
    if len(report.shards) < settings.rollup_shards or report.lost:
        raise LeaseLost(f"catch_up ran {len(report.shards)} of {settings.rollup_shards} shards")
    return report
