"""`pulse bench reprocess`: replay throughput against the live indexer's, in the same run, and
what one day costs on a longer log.

The events of ``days`` days (the log starts at a midnight) go to Kafka once, in arrival order
and stamped with their arrival time (most within a minute of occurring, ``LATE_SHARE`` 1 h to
3 days late). The live indexer (in-process, ``bench.indexer``'s harness) indexes them into the
live generation. Then ``pulse reprocess`` replays (1) every day: throughput, ratio = replay
events/s / live events/s (target >= 0.8); (2) the first day only, ``days`` - 1 days later:
messages read per event rebuilt (docs/decisions/0131; goal <= 1.3). Times are the replay
phase (from the run state's phase times); planning, verify and the switch are fixed costs.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from typing import Any

import typer

from bench import indexer as indexer_bench
from indexer.model import DAY_MS
from ingest import loadgen
from ingest.contract import parse_instant, to_kafka_message
from ingest.sinks import kafka_producer
from pulse.clients import ensure_topics, opensearch_client
from pulse.naming import names_for
from pulse.settings import Settings, get_settings
from reprocess import runs
from reprocess.service import Context, Reprocess

LATE_SHARE = 0.02  # events arriving 1 h .. 3 days after they occurred
ON_TIME_S = 60  # the others arrive within a minute


def run_bench(settings: Settings, count: int, days: int, seed: int) -> dict[str, Any]:
    with indexer_bench.engines(settings) as ep:
        mine = settings.model_copy(
            update={
                "opensearch_url": ep.opensearch_url,
                "kafka_bootstrap": ep.kafka_bootstrap,
                "namespace": f"rbench{uuid.uuid4().hex[:8]}",
                "kafka_session_timeout_ms": 3000,
                "kafka_heartbeat_interval_ms": 500,
                "generation_registry_ttl_s": 0.5,
                "reprocess_hold_grace_s": 1.0,  # no API here; the bench times the replay
            }
        )
        now = int(time.time() * 1000)
        first_day = (now // DAY_MS - (days - 1)) * DAY_MS  # the log starts at a midnight
        gen = loadgen.Generator(loadgen.LoadSpec(seed=seed, duplicate_rate=0.01))
        events = list(gen.stream(gen.events(count, first_day, now)))[:count]
        client = opensearch_client(ep.opensearch_url, settings.engine_timeout_s)
        try:
            _produce_arrivals(mine, ep.kafka_bootstrap, events, seed)
            live = indexer_bench._index(mine, ep, len(events))
            ctx = Context(client, mine, names_for(mine), ep.kafka_bootstrap, progress=False)
            replay = _replay(ctx, first_day, now + 1)  # every day: throughput
            # The first day, rebuilt ``days`` - 1 days later: what one day costs on the log.
            one_day = _replay(ctx, first_day, first_day + 1)
        finally:
            client.indices.delete(index=f"{mine.namespace}*", ignore_unavailable=True)
    live_rate = len(events) / live["wall_s"]
    replay_rate = replay["read"] / replay["replay_s"]
    return {
        "events": len(events),
        "days": days,
        "late_share": LATE_SHARE,
        "live_events_per_s": round(live_rate, 1),
        "replay_events_per_s": round(replay_rate, 1),
        "ratio": round(replay_rate / live_rate, 3),
        "batch_docs": mine.reprocess_batch_docs,
        "workers": mine.reprocess_workers,
        "all_days": _rounded(replay),
        "one_day": _rounded(one_day),
    }


def _rounded(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}


def _produce_arrivals(
    settings: Settings, bootstrap: str, events: list[dict[str, Any]], seed: int
) -> None:
    """The events in arrival order, each stamped with its arrival time: most within a minute
    of occurring, ``LATE_SHARE`` 1 h to 3 days later (never after now), so the log looks
    like the days it spans, late arrivals included."""
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    arrivals = []
    for raw in events:
        occurred = parse_instant(raw["occurred_at"], "occurred_at")
        if rng.random() < LATE_SHARE:
            delay = rng.randint(3_600_000, 3 * DAY_MS)
        else:
            delay = rng.randint(0, ON_TIME_S * 1000)
        arrivals.append((min(now, occurred + delay), raw))
    arrivals.sort(key=lambda a: a[0])
    ensure_topics(settings, bootstrap)
    producer = kafka_producer(bootstrap)
    topic = names_for(settings).topic_raw
    for at, raw in arrivals:
        key = str(raw["event_id"]).encode()
        producer.send(topic, key=key, value=to_kafka_message(raw), timestamp_ms=at)
    producer.flush()
    producer.close()


def _replay(ctx: Context, start_ms: int, end_ms: int) -> dict[str, Any]:
    started = time.perf_counter()
    run = Reprocess(ctx, start_ms, end_ms, None).apply()
    total_s = time.perf_counter() - started
    if run.phase != runs.SWITCHED:
        raise RuntimeError(f"bench run ended {run.phase}: {run.report}")
    replay_ms = run.times[runs.REPLAYED] - run.times[runs.REPLAYING]
    stats = run.stats
    return {
        "read": stats["read"],
        "fetched": stats.get("fetched", 0),
        "late_by_position": stats.get("late_asked", 0),
        "tallied": stats["tallied"],
        "read_per_event_rebuilt": stats["read"] / max(1, stats["tallied"]),
        "fetched_per_event_rebuilt": stats.get("fetched", 0) / max(1, stats["tallied"]),
        "log_messages": sum(run.plan.end_offsets.values()),
        "replay_s": replay_ms / 1000,
        "workers_spawned": stats.get("workers_spawned", 1),
        "end_to_end_s": total_s,
        "verified": run.report["verify"]["ok"],
    }


def register_bench(bench: typer.Typer) -> None:
    """Add `pulse bench reprocess`."""

    @bench.command("reprocess")
    def reprocess_bench(
        events: int = typer.Option(50_000, help="Events sent to Kafka once, read twice."),
        days: int = typer.Option(7, help="Spread over the last N days (the log's length)."),
        seed: int = typer.Option(7),
    ) -> None:
        """Replay throughput relative to the live indexer's (same events, same run), and
        messages read per event rebuilt for the oldest day of the log."""
        print(json.dumps(run_bench(get_settings(), events, days, seed)))
