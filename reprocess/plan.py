"""The plan of a reprocessing run: what it reads, what it builds, what the switch changes.

Ranges are widened to whole UTC days, because raw indices (and so the switch) are per day.
A replay starts ``reprocess_lateness_s`` before the first day in Kafka time: an event occurring
on a day may be appended to Kafka before that day starts (producer clock skew,
``max_future_skew_s``), never earlier than that. It reads to the head, because late events of
the range keep arriving after it (they may be days late).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from opensearchpy import OpenSearch

from pulse.naming import DAY_FORMAT, Names
from pulse.settings import Settings
from reprocess import generations as gens
from reprocess import late
from reprocess.offsets import heads
from storage import registry

GENERATION_RE = re.compile(r"[a-z0-9_]{1,32}")  # no '-': it separates name parts


class PlanError(ValueError):
    """The requested run cannot be planned (bad range, generation clash, missing history)."""


@dataclass(frozen=True)
class DayPlan:
    day: str
    old_generation: str  # what serves the day now (registry), restored by a rollback
    old_indices: list[str]  # what the switch removes from the read alias
    old_docs: int
    new_index: str  # the new generation's day name (write alias)


@dataclass(frozen=True)
class Plan:
    kind: str  # "replay" (from Kafka) or "reindex" (from the engine)
    new_generation: str
    start_ms: int  # first day's start
    end_ms: int  # day after the last day, start
    days: list[DayPlan]
    replay_from_ms: int = 0
    start_offsets: dict[str, int] = field(default_factory=dict)  # partition -> offset
    end_offsets: dict[str, int] = field(default_factory=dict)  # the head when planned
    warnings: list[str] = field(default_factory=list)
    # Arrival window (docs/decisions/0131): the sequential read also stops, per partition, at
    # the first message stamped at or after ``window_end_ms``; the range's messages past that
    # point are fetched by the positions the serving generation holds. 0: no window (the
    # sequential read goes to ``end_offsets``, the final catch-up to the head).
    window_end_ms: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return sum(self.end_offsets[p] - o for p, o in self.start_offsets.items())

    def day_dates(self) -> list[date]:
        return [gens.parse_day(d.day) for d in self.days]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        days = [DayPlan(**d) for d in data["days"]]
        return cls(**{**data, "days": days})

    def describe(self) -> list[str]:
        """Human-readable lines: the dry run's output."""
        lines = [
            f"{self.kind} into generation {self.new_generation}: {len(self.days)} day(s) "
            f"{self.days[0].day} .. {self.days[-1].day}",
        ]
        for d in self.days:
            old = ", ".join(d.old_indices) or "(none)"
            lines.append(f"  {d.day}: read alias {old} [{d.old_docs} docs] -> {d.new_index}")
        if self.kind == "replay":
            lines.append(
                f"  Kafka: {self.messages} messages from {len(self.start_offsets)} "
                f"partitions, starting at {self.replay_from_ms} ms (lateness margin)"
            )
            for p in sorted(self.start_offsets, key=int):
                lines.append(
                    f"    partition {p}: {self.start_offsets[p]} -> {self.end_offsets[p]}+"
                )
        if self.kind == "replay" and self.window_end_ms:
            lines.append(
                f"  sequential read stops at messages stamped from {self.window_end_ms} ms "
                "(range end + late window); later arrivals are fetched by position"
            )
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  warning: {w}" for w in self.warnings]
        return lines


def build_plan(
    client: OpenSearch,
    consumer: KafkaConsumer | None,
    settings: Settings,
    names: Names,
    start_ms: int,
    end_ms: int,
    generation: str | None,
    kind: str = "replay",
) -> Plan:
    """Look at the engine (and Kafka for a replay) and say exactly what a run would do."""
    if end_ms <= start_ms:
        raise PlanError("--to must be after --from")
    days = gens.days_between(start_ms, end_ms)
    new_gen = generation or _next_generation(client, names, settings)
    if not GENERATION_RE.fullmatch(new_gen):
        raise PlanError(f"generation {new_gen!r} must match {GENERATION_RE.pattern}")
    day_plans = [_day_plan(client, names, settings, new_gen, d) for d in days]
    plan = Plan(
        kind,
        new_gen,
        gens.day_start_ms(days[0]),
        gens.day_start_ms(days[-1]) + gens.DAY_MS,
        day_plans,
    )
    if kind == "replay":
        assert consumer is not None
        plan = _with_window(_with_offsets(plan, consumer, names, settings), client, names, settings)
    return plan


def _day_plan(
    client: OpenSearch, names: Names, settings: Settings, new_gen: str, day: date
) -> DayPlan:
    key = day.strftime(DAY_FORMAT)
    serving = gens.serving(client, names).get(key, {})
    if new_gen in serving:
        raise PlanError(f"generation {new_gen} already serves {key}; choose another name")
    if client.indices.exists(index=names.raw_index(new_gen, day)):
        raise PlanError(f"{names.raw_index(new_gen, day)} exists; `pulse reprocess cleanup` it")
    old_gen = registry.load(client, names, settings.generation)[0].generation_for(day)
    old_indices = sorted(i for indices in serving.values() for i in indices)
    docs = 0
    if old_indices:
        docs = int(client.count(index=",".join(old_indices))["count"])
    return DayPlan(key, old_gen, old_indices, docs, names.raw_index(new_gen, day))


def _next_generation(client: OpenSearch, names: Names, settings: Settings) -> str:
    """g<N+1> after the highest g<N> that exists anywhere in the namespace."""
    pattern = gens.raw_name_re(names)
    found = client.indices.get(index=names.raw_pattern, allow_no_indices=True)
    numbers = [1]
    for index in [*found, names.raw_index(settings.generation, date(2000, 1, 1))]:
        match = pattern.match(index)
        if match and re.fullmatch(r"g\d+", match["gen"]):
            numbers.append(int(match["gen"][1:]))
    return f"g{max(numbers) + 1}"


def _with_offsets(plan: Plan, consumer: KafkaConsumer, names: Names, settings: Settings) -> Plan:
    topic = names.topic_raw
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise PlanError(f"topic {topic} not found")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    since = plan.start_ms - settings.reprocess_lateness_s * 1000
    found = consumer.offsets_for_times({tp: since for tp in tps})
    first, head = consumer.beginning_offsets(tps), heads(consumer, tps)
    start, warnings = {}, []
    for tp in tps:
        hit = found.get(tp)
        start[str(tp.partition)] = hit.offset if hit is not None else head[tp]
        if first[tp] > 0 and start[str(tp.partition)] == first[tp]:
            warnings.append(
                f"partition {tp.partition}: history before offset {first[tp]} was deleted by "
                "retention; the replay may miss events of the range (docs/reprocessing.md)"
            )
    end = {str(tp.partition): head[tp] for tp in tps}
    return Plan(
        **{
            **plan.__dict__,
            "replay_from_ms": since,
            "start_offsets": start,
            "end_offsets": end,
            "warnings": warnings,
        }
    )


def _with_window(plan: Plan, client: OpenSearch, names: Names, settings: Settings) -> Plan:
    """The arrival window, unless disabled or the serving documents that may lie past it do
    not all carry their Kafka position (written before positions were stamped)."""
    if settings.reprocess_late_window_s < 0:
        return plan
    window_end = plan.end_ms + settings.reprocess_late_window_s * 1000
    since = window_end - settings.reprocess_lateness_s * 1000
    for day in plan.days:
        indices = late.serving_indices(client, names, day.old_generation, gens.parse_day(day.day))
        without = late.missing_positions(client, indices, since)
        if without:
            note = (
                f"{day.day}: {without} documents ingested since {since} ms carry no Kafka "
                "position; reading to the head instead of the arrival window"
            )
            return Plan(**{**plan.__dict__, "notes": [*plan.notes, note]})
    return Plan(**{**plan.__dict__, "window_end_ms": window_end})
