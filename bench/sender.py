"""The load sender of `pulse bench e2e`, run as its own process (``python -m bench.sender``).

A separate process so that generating and sending load never shares an interpreter (GIL) with
the measuring loop, and so its own CPU can be reported: the load generator must not be the
bottleneck, and the report shows its achieved rate next to the target.
Prints one JSON object: sent, elapsed_s, achieved_rate, cpu_s.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import psutil

from ingest import sinks
from ingest.loadgen import Generator, LoadSpec, paced


def send(to: str, target: str, topic: str, rate: float, duration_s: float, seed: int) -> int:
    """Send realistic events at ``rate`` for ``duration_s`` through the collector or Kafka."""
    gen = Generator(LoadSpec(merchants=200, seed=seed))
    stream = paced(gen.event_at, rate, duration_s)
    if to == "collector":
        # Ten requests a second, as `pulse loadgen --to collector` batches.
        key = os.environ["PULSE_WRITE_KEY"]  # an admin write key, from bench.e2e
        return sinks.send_to_collector(target, stream, key, batch=max(1, min(500, int(rate // 10))))
    producer = sinks.kafka_producer(target, client_id="pulse-bench-load")
    try:
        return sinks.send_to_kafka(producer, topic, stream)
    finally:
        producer.close(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--to", choices=("collector", "kafka"), required=True)
    parser.add_argument("--target", required=True, help="collector URL or Kafka bootstrap")
    parser.add_argument("--topic", default="events.raw")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    sent = send(args.to, args.target, args.topic, args.rate, args.duration, args.seed)
    elapsed = time.monotonic() - started
    times = psutil.Process().cpu_times()
    result: dict[str, Any] = {
        "sent": sent,
        "elapsed_s": round(elapsed, 3),
        "achieved_rate": round(sent / elapsed, 1) if elapsed > 0 else 0.0,
        "cpu_s": round(times.user + times.system, 3),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
