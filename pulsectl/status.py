"""``pulse status``: the whole pipeline on one screen, and whether a person is needed.

``collect`` reads every section from the engines (and, for the embedded stack, from
``stack.json``'s pids and metrics endpoints) into a frozen ``Status``; ``pulsectl.status_view``
renders it. Each section is read on its own: one that cannot be read becomes a problem and
the others are still shown. ``Status.problems`` lists what needs a person; the command exits
1 when it is not empty, so it can serve as a probe.

Thresholds are the alert rules' (k8s/monitoring/prometheusrule.yaml), so the command and
the pager agree: watermark behind by more than 30 minutes, a partition blocked by an
undecodable batch, lag growing while more than 5 minutes of work behind, a reprocess run
unfinished with no phase change for 2 hours, a component down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from opensearchpy import OpenSearch
from prometheus_client.parser import text_string_to_metric_families

from ilm import manager
from ilm.inventory import RAW, load_inventory
from ilm.status import phase
from indexer import deadletters
from pulse.clients import opensearch_client, read_stack, resolve_endpoints
from pulse.engines import pid_alive
from pulse.naming import Names, names_for
from pulse.settings import Settings
from reprocess import runs
from rollups import state
from rollups.shards import Shard, read_all
from storage import registry

WATERMARK_BEHIND_S = 1800
LAG_BEHIND_S = 300
RUN_STUCK_S = 2 * 3600

T = TypeVar("T")


@dataclass(frozen=True)
class Component:
    name: str
    alive: bool
    detail: str = ""


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    lag: int
    change: int | None = None  # lag now - lag one sample window ago (positive: growing)
    blocked: bool = False  # stopped at an undecodable batch (the indexer's metric)


@dataclass(frozen=True)
class ShardState:
    """One rollup shard (rollups.shards): its live owner (None: nobody's lease runs) and W."""

    shard: int
    owner: str | None
    watermark: str | None
    age_s: float | None


@dataclass(frozen=True)
class RollupState:
    watermark: str | None  # the served W: the slowest shard's
    age_s: float | None
    holds: list[str] = field(default_factory=list)
    shards: list[ShardState] = field(default_factory=list)

    def unowned(self) -> list[int]:
        return [s.shard for s in self.shards if s.owner is None]


@dataclass(frozen=True)
class RunState:
    run_id: str
    phase: str
    since_s: float  # seconds since it entered that phase


@dataclass(frozen=True)
class DeadLetters:
    by_reason: dict[str, dict[str, int]]  # window ("hour", "day") -> reason -> count


@dataclass(frozen=True)
class Lifecycle:
    phases: dict[str, int]
    next_rollover: str | None
    retention_deletes: list[str]


@dataclass(frozen=True)
class Status:
    taken_at: str
    embedded: bool
    generation: str
    switched_days: int
    components: list[Component] = field(default_factory=list)
    lag: list[PartitionLag] = field(default_factory=list)
    consumed_per_s: float | None = None  # committed offsets' advance over the sample window
    rollups: RollupState | None = None
    runs: list[RunState] = field(default_factory=list)
    dead_letters: DeadLetters | None = None
    lifecycle: Lifecycle | None = None
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def collect(settings: Settings, sample_s: float = 2.0, now: float | None = None) -> Status:
    """Read every section; ``sample_s`` apart, lag is read twice for its trend (0: once)."""
    endpoints = resolve_endpoints(settings)
    names = names_for(settings)
    client = opensearch_client(endpoints.opensearch_url, timeout_s=10)
    stack = read_stack(settings)
    problems: list[str] = []

    def section(name: str, read: Callable[[], T]) -> T | None:
        try:
            return read()
        except Exception as exc:  # one unreadable section must not hide the others
            problems.append(f"{name}: cannot read ({type(exc).__name__}: {exc})")
            return None

    metrics = _scrape_all(stack)
    components = section("components", lambda: _components(stack, metrics))
    lag = section("lag", lambda: _lag(settings, endpoints.kafka_bootstrap, names, sample_s))
    lags, rate = lag if lag is not None else ([], None)
    now_s = time.time() if now is None else now
    letters = section("dead letters", lambda: _dead_letters(settings, now_s))
    blocked = _blocked_partitions(metrics.get("indexer"))
    blocked |= letters[1] if letters is not None else set()
    rollups = section("rollups", lambda: _rollups(client, settings, names, now_s))
    if not stack and lag is not None:  # a cluster: what the engines say about the workers
        components = _cluster_components(lags, rate, sample_s, rollups)
    reg = section("generation", lambda: registry.load(client, names, settings.generation)[0])
    status = Status(
        taken_at=datetime.fromtimestamp(now_s, tz=UTC).isoformat(timespec="seconds"),
        embedded=bool(stack),
        generation=settings.generation,
        switched_days=len(reg.days) if reg is not None else 0,
        components=components or [],
        lag=[PartitionLag(p.partition, p.lag, p.change, p.partition in blocked) for p in lags],
        consumed_per_s=rate,
        rollups=rollups,
        runs=section("reprocess", lambda: _runs(client, names, now_s)) or [],
        dead_letters=letters[0] if letters is not None else None,
        lifecycle=section("lifecycle", lambda: _lifecycle(client, settings, names, now_s)),
        problems=problems,
    )
    problems.extend(needs_a_person(status))
    return status


def needs_a_person(status: Status) -> list[str]:
    """What the alert rules would page for, said in words."""
    found = [f"{c.name} is down ({c.detail})" for c in status.components if not c.alive]
    found += [
        f"partition {p.partition} is blocked at an undecodable batch"
        for p in status.lag
        if p.blocked
    ]
    total = sum(p.lag for p in status.lag)
    growing = [p for p in status.lag if p.change is not None and p.change > 0]
    rate = max(status.consumed_per_s or 0.0, 1.0)
    if growing and total / rate > LAG_BEHIND_S:
        found.append(f"indexer lag {total} is growing and more than {LAG_BEHIND_S}s behind")
    r = status.rollups
    if r is not None and r.age_s is not None and r.age_s > WATERMARK_BEHIND_S:
        found.append(f"rollup watermark is {r.age_s / 60:.0f} min behind the clock")
    orphans = r.unowned() if r is not None else []
    if r is not None and orphans and len(orphans) < len(r.shards):  # all: "rollups is down"
        found.append(f"rollup shards {', '.join(map(str, orphans))} have no live worker")
    found += [
        f"reprocess run {run.run_id} has been {run.phase} for {run.since_s / 3600:.1f} h"
        for run in status.runs
        if run.since_s > RUN_STUCK_S
    ]
    return found


# --- components ---------------------------------------------------------------------------


def _scrape_all(stack: dict[str, Any]) -> dict[str, str]:
    """The embedded components' /metrics text, by component (unreachable ones left out)."""
    texts: dict[str, str] = {}
    for name, url in (stack.get("metrics_urls") or {}).items():
        try:
            answer = httpx.get(url, timeout=2)
        except httpx.HTTPError:
            continue
        if answer.status_code == 200:
            texts[name] = answer.text
    return texts


def _components(stack: dict[str, Any], metrics: dict[str, str]) -> list[Component]:
    """Embedded stack: each component's process and, where it has one, its metrics endpoint
    (a cluster has no stack.json: see ``_cluster_components``)."""
    out = []
    for name, pid in (stack.get("components") or {}).items():
        if not name.startswith("loadgen"):
            alive = pid_alive(int(pid))
            endpoint = name not in (stack.get("metrics_urls") or {}) or name in metrics
            detail = f"pid {pid}" + ("" if endpoint else ", metrics endpoint not answering")
            out.append(Component(name, alive and endpoint, detail if alive else f"pid {pid} gone"))
    return out


def _cluster_components(
    lags: list[PartitionLag],
    rate: float | None,
    sample_s: float,
    rollups: RollupState | None,
) -> list[Component]:
    """On a cluster: the indexer group consumes (its committed offsets moved during the
    sample, or nothing waits), and rollup workers hold unexpired shard leases (holders renew
    them every run)."""
    out = []
    if sample_s > 0 and rate is not None:
        waiting = sum(p.lag for p in lags)
        consuming = rate > 0 or waiting == 0
        detail = f"group commits {rate:.0f} msg/s, {waiting} waiting"
        out.append(Component("indexer", consuming, detail))
    if rollups is not None and rollups.shards:
        owners = {sh.owner for sh in rollups.shards if sh.owner is not None}
        held = len(rollups.shards) - len(rollups.unowned())
        detail = f"{held} of {len(rollups.shards)} shards held by {len(owners)} workers"
        out.append(Component("rollups", held > 0, detail))
    return out


def _samples(text: str | None, metric: str) -> list[tuple[dict[str, str], float]]:
    if not text:
        return []
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == metric
    ]


def _blocked_partitions(text: str | None) -> set[int]:
    samples = _samples(text, "pulse_indexer_partition_blocked")
    return {int(labels["partition"]) for labels, value in samples if value > 0}


# --- Kafka --------------------------------------------------------------------------------


def _lag(
    settings: Settings, bootstrap: str, names: Names, sample_s: float
) -> tuple[list[PartitionLag], float | None]:
    """Lag per partition of the indexer group, read twice ``sample_s`` apart: its change,
    and the group's consumption rate (committed offsets' advance per second)."""
    group = names.group(settings.indexer_group)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="pulse-status")
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, client_id="pulse-status", enable_auto_commit=False
    )
    try:
        parts = sorted(consumer.partitions_for_topic(names.topic_raw) or [])
        tps = [TopicPartition(names.topic_raw, p) for p in parts]
        consumer.assign(tps)

        def read() -> dict[int, tuple[int, int]]:
            """partition -> (committed position, lag)"""
            committed = admin.list_group_offsets({group: None}).get(group, {})
            ends = read_ends(consumer, tps)
            begins = consumer.beginning_offsets(tps)
            out = {}
            for tp in tps:
                meta = committed.get(tp)
                at = meta.offset if meta is not None and meta.offset >= 0 else begins[tp]
                out[tp.partition] = (at, max(0, ends[tp] - at))
            return out

        first = read()
        if sample_s <= 0:
            return [PartitionLag(p, lag) for p, (_, lag) in first.items()], None
        time.sleep(sample_s)
        second = read()
        lags = [PartitionLag(p, second[p][1], second[p][1] - first[p][1]) for p in parts]
        advanced = sum(second[p][0] - first[p][0] for p in parts)
        return lags, advanced / sample_s
    finally:
        consumer.close()
        admin.close()


def read_ends(consumer: KafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """End offsets that are right on the embedded Tansu broker too: its ListOffsets(latest)
    answers the last batch's base offset (docs/decisions/0061), so the tail from there is read
    (at most a batch per partition) and the end is max(answer, last offset read + 1)."""
    ends = dict(consumer.end_offsets(tps))
    for tp in tps:
        consumer.seek(tp, ends[tp])
    while batch := consumer.poll(timeout_ms=300, max_records=10_000):
        for tp, records in batch.items():
            ends[tp] = max(ends[tp], records[-1].offset + 1)
    return ends


def _dead_letters(settings: Settings, now_s: float) -> tuple[DeadLetters, set[int]]:
    """Dead letters by reason over the last hour and day, and the partitions stopped at an
    undecodable batch, from ``indexer.deadletters.stats`` (no consumer group to join)."""
    found = deadletters.stats(settings, now_ms=int(now_s * 1000), timeout_s=30)
    windows = {"hour": ("<1h",), "day": ("<1h", "1h-24h")}
    counts = {
        window: {
            reason: n
            for reason, ages in found.by_reason_age.items()
            if (n := sum(ages.get(bucket, 0) for bucket in buckets))
        }
        for window, buckets in windows.items()
    }
    blocked = {int(batch["partition"]) for batch in found.blocked_batches}
    return DeadLetters(counts), blocked


# --- OpenSearch ---------------------------------------------------------------------------


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def _rollups(client: OpenSearch, settings: Settings, names: Names, now_s: float) -> RollupState:
    """The served W and holds, and every shard of the configured layout (none before the
    first worker ran)."""
    view = state.view(client, names)
    w = view.watermark()
    holds = [f"{h.reason or h.key}: {_iso(h.start)} .. {_iso(h.end)}" for h in view.holds]
    docs = read_all(client, names, settings.rollup_shards)
    shards = [_shard(d, settings.generation, now_s) for d in docs.values() if d.cas is not None]
    return RollupState(None if w is None else _iso(w), _age(w, now_s), holds, shards)


def _shard(doc: Shard, generation: str, now_s: float) -> ShardState:
    w = doc.watermark(generation)
    owner = doc.owner() if doc.expires_at() > now_s * 1000 else None
    return ShardState(doc.index, owner, None if w is None else _iso(w), _age(w, now_s))


def _age(watermark_ms: int | None, now_s: float) -> float | None:
    return None if watermark_ms is None else max(0.0, now_s - watermark_ms / 1000)


def _runs(client: OpenSearch, names: Names, now_s: float) -> list[RunState]:
    found = []
    for run in runs.all_runs(client, names):
        if run.phase in runs.UNFINISHED:
            since_ms = max(run.times.values(), default=run.created_at)
            found.append(RunState(run.run_id, run.phase, max(0.0, now_s - since_ms / 1000)))
    return found


def _lifecycle(client: OpenSearch, settings: Settings, names: Names, now_s: float) -> Lifecycle:
    now = datetime.fromtimestamp(now_s, tz=UTC)
    inventory = load_inventory(client, names)
    phases: dict[str, int] = {}
    for info in inventory:
        key = f"{info.kind} {phase(info, settings, now)}"
        phases[key] = phases.get(key, 0) + 1
    writes = [i for i in inventory if i.kind == RAW and i.is_write]
    fill = [
        (
            max(
                i.docs / settings.ilm_rollover_max_docs,
                i.primary_shard_bytes / (settings.ilm_rollover_max_primary_shard_gb * 2**30),
            ),
            i,
        )
        for i in writes
    ]
    nearest = max(fill, key=lambda pair: pair[0], default=None)
    next_rollover = None if nearest is None else f"{nearest[1].name} at {nearest[0]:.0%}"
    ctx = manager.Context(client, settings, names, now)
    deletes = [action.target for action in manager.deletes(ctx, inventory)]
    return Lifecycle(phases, next_rollover, deletes)
