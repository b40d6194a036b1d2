"""`pulse bench reprocess`: replay throughput against the live indexer's, in the same run.

The same events go to Kafka once; the live indexer (in-process, ``bench.indexer``'s harness)
indexes them into the live generation, then ``pulse reprocess`` replays the same range into a
new generation. Ratio = replay events/s / live events/s (target >= 0.8). The replay's time is
its replay phase only (from the run state's phase times): planning, verify and the switch's
fence wait are fixed costs, reported separately.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import typer

from bench import indexer as indexer_bench
from indexer.model import DAY_MS
from pulse.clients import opensearch_client
from pulse.naming import names_for
from pulse.settings import Settings, get_settings
from reprocess import runs
from reprocess.service import Context, Reprocess


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
        events = indexer_bench._events(count, days, seed)
        client = opensearch_client(ep.opensearch_url, settings.engine_timeout_s)
        try:
            indexer_bench._produce(mine, ep.kafka_bootstrap, events)
            live = indexer_bench._index(mine, ep, len(events))
            replay = _replay(
                Context(client, mine, names_for(mine), ep.kafka_bootstrap, progress=False), days
            )
        finally:
            client.indices.delete(index=f"{mine.namespace}*", ignore_unavailable=True)
    live_rate = len(events) / live["wall_s"]
    replay_rate = replay["read"] / replay["replay_s"]
    return {
        "events": len(events),
        "live_events_per_s": round(live_rate, 1),
        "replay_events_per_s": round(replay_rate, 1),
        "ratio": round(replay_rate / live_rate, 3),
        "batch_docs": mine.reprocess_batch_docs,
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in replay.items()},
    }


def _replay(ctx: Context, days: int) -> dict[str, Any]:
    now = int(time.time() * 1000)
    started = time.perf_counter()
    run = Reprocess(ctx, now - days * DAY_MS, now + 1, None).apply()
    total_s = time.perf_counter() - started
    if run.phase != runs.SWITCHED:
        raise RuntimeError(f"bench run ended {run.phase}: {run.report}")
    replay_ms = run.times[runs.REPLAYED] - run.times[runs.REPLAYING]
    return {
        "read": run.stats["read"],
        "tallied": run.stats["tallied"],
        "replay_s": replay_ms / 1000,
        "end_to_end_s": total_s,
        "verified": run.report["verify"]["ok"],
    }


def register_bench(bench: typer.Typer) -> None:
    """Add `pulse bench reprocess`."""

    @bench.command("reprocess")
    def reprocess_bench(
        events: int = typer.Option(50_000, help="Events sent to Kafka once, read twice."),
        days: int = typer.Option(2, help="Spread over the last N days."),
        seed: int = typer.Option(7),
    ) -> None:
        """Replay throughput relative to the live indexer's (same events, same run)."""
        print(json.dumps(run_bench(get_settings(), events, days, seed)))
