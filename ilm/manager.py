"""The curator-like manager: plan the actions an inventory needs, apply them under the lock.

Which engine features are used is decided once per pass: with the ISM plugin, ISM rolls over,
warms and deletes (the manager puts the policies and keeps the per-day rollover aliases);
without it, the manager does all of that itself with plain index and alias calls. Pre-creating
days, keeping a day's backing indices together in the read alias, and reconciling rolled-over
indices are done on both paths.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from opensearchpy import OpenSearch

from ilm import filters as f
from ilm import ism
from ilm.actions import (
    Action,
    CoverReadAlias,
    CreateDay,
    DeleteIndex,
    Refused,
    Warm,
    templates_action,
)
from ilm.inventory import RAW, ROLLUP, IndexInfo, day_groups, load_inventory
from ilm.ism_actions import AttachIsmPolicy, PutIsmPolicy, SetRolloverAlias
from ilm.lock import ManagerLock, ensure_state_index
from ilm.rollover import Reconcile, Rollover
from pulse.naming import Names
from pulse.settings import Settings
from storage import rollup_schema as rs
from storage.templates import GIB, raw_shard_count

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    ism: bool
    actions: list[Action]


@dataclass(frozen=True)
class Context:
    client: OpenSearch
    settings: Settings
    names: Names
    now: datetime


def plan(
    client: OpenSearch,
    settings: Settings,
    names: Names,
    now: datetime | None = None,
    plugins: list[str] | None = None,
) -> Plan:
    """What the manager would do now; nothing is changed. ``plugins`` overrides detection."""
    ctx = Context(client, settings, names, now or datetime.now(tz=UTC))
    inventory = load_inventory(client, names)
    use_ism = ism.ism_available(client, plugins)
    candidates: list[Action] = [templates_action(client, settings, names)]
    candidates += precreate(ctx, inventory)
    candidates += cover_read_alias(ctx, inventory)
    if use_ism:
        candidates += ism_actions(ctx, inventory)
    else:
        candidates += rollovers(ctx, inventory) + warm(ctx, inventory) + deletes(ctx, inventory)
    candidates += reconciles(ctx, inventory)
    return Plan(use_ism, [action for action in candidates if not action.done()])


def precreate(ctx: Context, inventory: list[IndexInfo]) -> list[Action]:
    """Today and the next ``ilm_precreate_days`` of the configured generation."""
    today = ctx.now.date()
    days = [today + timedelta(days=n) for n in range(ctx.settings.ilm_precreate_days + 1)]
    gen = ctx.settings.generation
    return [CreateDay(ctx.client, ctx.names, gen, day, read_alias=True) for day in days]


def cover_read_alias(ctx: Context, inventory: list[IndexInfo]) -> list[Action]:
    """A day served through ``events`` is served whole: all its backing indices are members."""
    actions: list[Action] = []
    for group in day_groups(inventory).values():
        missing = [i.name for i in f.select(group, f.in_read_alias(False))]
        if missing and len(missing) < len(group):
            actions.append(CoverReadAlias(ctx.client, ctx.names.events_alias, missing))
    return actions


def rollovers(ctx: Context, inventory: list[IndexInfo]) -> list[Action]:
    s = ctx.settings
    max_shard_bytes = s.ilm_rollover_max_primary_shard_gb * GIB
    chosen = f.select(
        inventory,
        f.kind(RAW),
        f.rollable(),
        f.write_index(),
        f.write_blocked(False),
        f.negate(f.past_retention(ctx.now, s.raw_retention_days)),
        f.over_thresholds(s.ilm_rollover_max_docs, max_shard_bytes),
    )
    return [
        Rollover(ctx.client, ctx.names, info, _why(info, s), s.engine_timeout_s) for info in chosen
    ]


def _why(info: IndexInfo, s: Settings) -> str:
    if info.docs >= s.ilm_rollover_max_docs:
        return f"{info.docs} docs >= {s.ilm_rollover_max_docs}"
    return f"primary shard {info.primary_shard_bytes / GIB:.1f}gb"


def warm(ctx: Context, inventory: list[IndexInfo]) -> list[Action]:
    """Served raw indices whose day ended ``ilm_warm_after_days`` ago (late events up to that
    age still land in a writable index)."""
    s = ctx.settings
    chosen = f.select(
        inventory,
        f.kind(RAW),
        f.in_read_alias(),
        f.ended_before(ctx.now - timedelta(days=s.ilm_warm_after_days)),
        f.negate(f.past_retention(ctx.now, s.raw_retention_days)),
        f.negate(f.warm_done(s.ilm_warm_replicas)),
    )
    return [Warm(ctx.client, info, s.ilm_warm_replicas) for info in chosen]


def deletes(ctx: Context, inventory: list[IndexInfo]) -> list[Action]:
    """Past retention, in every generation, served or not."""
    s = ctx.settings
    actions: list[Action] = []
    for kind, days, field in (
        (RAW, s.raw_retention_days, "occurred_at"),
        (ROLLUP, s.rollup_retention_days, rs.HOUR),
    ):
        cutoff = ctx.now - timedelta(days=days)
        cutoff_ms = int(cutoff.timestamp() * 1000)
        for info in f.select(inventory, f.kind(kind), f.past_retention(ctx.now, days)):
            actions.append(DeleteIndex(ctx.client, info, cutoff_ms, field))
    return actions


def reconciles(ctx: Context, inventory: list[IndexInfo]) -> list[Action]:
    """Rolled-over-to indices without a reconcile record (a manager that died mid-way, or an
    ISM rollover). An index not yet switched to (no write flag, no successor) is skipped: its
    Rollover reconciles it when the switch happens."""
    actions: list[Action] = []
    for group in day_groups(inventory).values():
        top = max(i.seq or 0 for i in group)
        for info in group:
            switched = info.is_write or (info.seq or 0) < top
            if (info.seq or 0) > 1 and switched:
                sealed = [i.name for i in group if (i.seq or 0) < (info.seq or 0)]
                actions.append(
                    Reconcile(
                        ctx.client,
                        ctx.names,
                        info.name,
                        sealed,
                        ctx.now.timestamp(),  # the switch happened before now: wait from now
                        ctx.settings.engine_timeout_s,
                    )
                )
    return actions


def ism_actions(ctx: Context, inventory: list[IndexInfo]) -> list[Action]:
    s, n = ctx.settings, ctx.names
    raw_body = ism.render_raw_policy(s, n, raw_shard_count(s))
    actions: list[Action] = [
        PutIsmPolicy(ctx.client, ism.raw_policy_id(n), raw_body),
        PutIsmPolicy(ctx.client, ism.rollup_policy_id(n), ism.render_rollup_policy(s, n)),
    ]
    for info in f.select(inventory, f.kind(RAW), f.rollable(), f.write_index()):
        if info.rollover_alias_setting != info.day_alias and info.day_alias:
            actions.append(SetRolloverAlias(ctx.client, info.name, info.day_alias))
    actions.append(AttachIsmPolicy(ctx.client, n.raw_pattern, ism.raw_policy_id(n)))
    actions.append(AttachIsmPolicy(ctx.client, n.rollups_pattern, ism.rollup_policy_id(n)))
    return actions


# Applying -------------------------------------------------------------------------------


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LockBusy(RuntimeError):
    """Another manager holds the lock."""


def apply(
    client: OpenSearch,
    settings: Settings,
    names: Names,
    now: datetime | None = None,
    plugins: list[str] | None = None,
    lock_wait_s: float = 0.0,
) -> list[str]:
    """Plan and apply under the manager lock; returns what was applied (dry-run lines)."""
    ensure_state_index(client, names.ilm_state_index)
    lock = ManagerLock(client, names.ilm_state_index, owner_id(), settings.ilm_lock_ttl_s)
    deadline = time.monotonic() + lock_wait_s
    while not lock.acquire():
        if time.monotonic() >= deadline:
            held = lock.current()
            raise LockBusy(f"ilm lock held by {held.owner if held else 'someone'}")
        time.sleep(0.5)
    try:
        return _apply_plan(client, settings, names, now, plugins, lock)
    finally:
        lock.release()


def _apply_plan(
    client: OpenSearch,
    settings: Settings,
    names: Names,
    now: datetime | None,
    plugins: list[str] | None,
    lock: ManagerLock,
) -> list[str]:
    applied = []
    for action in plan(client, settings, names, now, plugins).actions:
        lock.renew()  # raises LockLost: never act after another manager took over
        try:
            action.apply()
        except Refused as refused:
            log.warning(
                "ilm action refused", extra={"action": action.dry_run(), "why": str(refused)}
            )
            continue
        applied.append(action.dry_run())
    return applied


def run_loop(client: OpenSearch, settings: Settings, names: Names, stop: threading.Event) -> None:
    """One pass every ``ilm_interval_s`` until ``stop`` is set. A failed pass is logged and
    retried at the next tick; a busy lock means another manager is doing the work."""
    while not stop.is_set():
        try:
            applied = apply(client, settings, names)
            log.info("ilm pass done", extra={"applied": len(applied)})
        except LockBusy as busy:
            log.info("ilm pass skipped", extra={"reason": str(busy)})
        except Exception:
            log.exception("ilm pass failed")
        stop.wait(settings.ilm_interval_s)
