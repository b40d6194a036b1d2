"""Samplers for `pulse bench e2e`: CPU per component (psutil) and the indexer's consumer lag.

Lag is the end offset of each partition minus the indexer group's committed offset, summed.
Tansu's end offsets were once seen to look wrong, so the bench also checks them at the end
against the number of messages it produced (``offsets_check``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psutil
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition


@dataclass
class CpuSampler:
    """Cores used per component between successive ``sample()`` calls (1.0 = one full core)."""

    pids: dict[str, int]
    procs: dict[str, psutil.Process] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    last_t: float = 0.0

    def __post_init__(self) -> None:
        for name, pid in self.pids.items():
            try:
                self.procs[name] = psutil.Process(pid)
            except psutil.Error:
                continue
        self.last = self.totals()
        self.last_t = time.monotonic()

    def add(self, name: str, pid: int) -> None:
        """Track one more process (the load sender of a step)."""
        try:
            self.procs[name] = psutil.Process(pid)
        except psutil.Error:
            return
        self.last[name] = 0.0

    def totals(self) -> dict[str, float]:
        """Cumulative CPU seconds (user + system) of each tracked, still running process."""
        out: dict[str, float] = {}
        for name, proc in self.procs.items():
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            # Reaped children's CPU is in children_*; a component that forks workers keeps
            # its cost under its own name.
            out[name] = times.user + times.system + times.children_user + times.children_system
        return out

    def sample(self) -> dict[str, float]:
        now = time.monotonic()
        totals = self.totals()
        dt = max(1e-6, now - self.last_t)
        cores = {n: max(0.0, (v - self.last.get(n, v)) / dt) for n, v in totals.items()}
        self.last, self.last_t = {**self.last, **totals}, now
        return cores


class LagSampler:
    """Consumer lag of one group on one topic: the partitions' end minus the committed offsets.

    Tansu's ListOffsets "latest" answer was seen to trail the real end (it looks like the base
    offset of the last record batch rather than the high watermark), so the end used here is
    the larger of the broker's answer and the last offset a tail-following consumer of our
    own has actually read, plus one. ``reported_end_offsets`` keeps the broker's answer so
    the run can show the difference.
    """

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.topic = topic
        self.group = group
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="pulse-bench-lag")
        self.tail = KafkaConsumer(
            bootstrap_servers=bootstrap, client_id="pulse-bench-tail", enable_auto_commit=False
        )
        partitions = self.tail.partitions_for_topic(topic) or set()
        self.partitions = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.tail.assign(self.partitions)
        self.tail.seek_to_beginning(*self.partitions)
        self.seen_end: dict[int, int] = {}

    def follow(self, max_rounds: int = 50) -> None:
        """Read what arrived since the last call (bounded), remembering each partition's end."""
        for _ in range(max_rounds):
            batches = self.tail.poll(timeout_ms=50, max_records=10_000)
            if not batches:
                return
            for tp, records in batches.items():
                self.seen_end[tp.partition] = records[-1].offset + 1

    def reported_end_offsets(self) -> dict[int, int]:
        ends = self.tail.end_offsets(self.partitions)
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    def end_offsets(self) -> dict[int, int]:
        self.follow()
        reported = self.reported_end_offsets()
        return {p: max(end, self.seen_end.get(p, 0)) for p, end in reported.items()}

    def committed(self) -> dict[int, int]:
        offsets = self.admin.list_group_offsets({self.group: self.partitions}).get(self.group, {})
        return {
            tp.partition: int(meta.offset)
            for tp, meta in offsets.items()
            if tp.topic == self.topic and meta.offset is not None and meta.offset >= 0
        }

    def lag(self) -> tuple[int, int]:
        """(lag, committed total): the second gives the indexing rate between samples."""
        ends, committed = self.end_offsets(), self.committed()
        lag = sum(max(0, end - committed.get(p, 0)) for p, end in ends.items())
        return lag, sum(committed.values())

    def close(self) -> None:
        self.tail.close()
        self.admin.close()
