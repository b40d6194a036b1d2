"""`pulse bench ...`: every benchmark's command (registered by pulsectl.cli).

Benchmarks live here, outside the product packages and the wheel; they drive the product
through its public functions. Each command imports its benchmark when it runs.
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(bench: typer.Typer) -> None:
    """Add every benchmark to the `pulse bench` group."""
    bench.command("e2e")(e2e)
    bench.command("indexer")(indexer)
    bench.command("query")(query)
    bench.command("rollups")(rollups)
    bench.command("api-load")(api_load)
    bench.command("curves")(curves)
    from bench.reprocess import register_bench

    register_bench(bench)


def e2e(
    quick: bool = typer.Option(False, help="500 and 2000/s, 25 s steps, collector: ~2 minutes."),
    rates: str = typer.Option("", help="Events/s per step (default 500,1000,2000)."),
    step_seconds: float = typer.Option(0.0, help="Seconds per step (default 60; quick 25)."),
    paths: str = typer.Option("", help="collector,kafka (default both; quick collector)."),
    rollup_interval_s: int = typer.Option(
        0, help="Rollup interval s (default settings; quick 10)."
    ),
    out: Path = typer.Option(Path("docs/bench"), help="Where the JSON and PNG plots go."),
) -> None:
    """Freshness (raw and rollup), consumer lag and CPU per component on the embedded stack."""
    import signal
    import sys

    from bench.e2e import E2EConfig, run_and_write

    # SIGTERM (a timeout, a CI cancel) must still stop the stack this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    config = E2EConfig.from_options(quick, rates, step_seconds, paths, rollup_interval_s)
    run_and_write(config, out)


def indexer(
    events: int = typer.Option(50_000, help="How many events to produce and index."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    days: int = typer.Option(2, help="Spread the events over this many recent days."),
    seed: int = typer.Option(7),
) -> None:
    """Produce N events to Kafka, index them, and compare with a raw _bulk load."""
    import orjson

    from bench.indexer import run_bench
    from pulse.logs import configure_logging
    from pulse.settings import get_settings

    settings = get_settings()
    configure_logging("WARNING", settings.log_json)
    result = run_bench(settings, events, days, seed)
    if as_json:
        print(orjson.dumps(result).decode())
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


def query(
    events: int = typer.Option(
        5_000_000,
        help="Raw events to load into an empty namespace (one with at least as many is reused).",
    ),
    requests: int = typer.Option(200, help="Requests per report and source."),
    merchants: int = typer.Option(200),
    seed: int = typer.Option(7),
    namespace: str = typer.Option("benchq", help="Namespace of the bench's indices."),
    funnel_runs: int = typer.Option(7, help="Timed requests per funnel case (0: none)."),
    only_funnels: bool = typer.Option(False, help="Only the funnel cases (no rollups needed)."),
) -> None:
    """30-day hourly and 90-day daily reports for one merchant, normal vs forced raw, and
    31/90-day funnels (JSON)."""
    from bench.query import run

    run(
        events=events, requests=requests, merchants=merchants, seed=seed, namespace=namespace,
        funnel_runs=funnel_runs, only_funnels=only_funnels,
    )  # fmt: skip


def rollups(
    events: int = typer.Option(50_000, help="Raw events for the cost measurement."),
    merchants: int = typer.Option(200),
    rate: float = typer.Option(100.0, help="Live events/s during the latency measurement."),
    interval: int = typer.Option(0, help="Job interval for the latency part [settings]."),
    margin: float = typer.Option(-1.0, help="Visibility margin, s [settings' derived value]."),
    skip_latency: bool = typer.Option(False, help="Only measure cost and reduction."),
    reduction: str = typer.Option("100000,1000000", help="Events/day for the offline factor."),
) -> None:
    """Rollup job cost per million raw events, rollup docs per raw event, and latencies."""
    from bench.rollups import BenchConfig, run

    levels = tuple(int(n) for n in reduction.split(",") if n.strip())
    config = BenchConfig(
        events, merchants, rate, interval or None, margin, not skip_latency, levels
    )
    run(config)


def api_load(
    events: int = typer.Option(100_000, help="Loadgen events loaded before the run."),
    merchants: int = typer.Option(200),
    workers: int = typer.Option(2, help="`pulse api` processes (W pods)."),
    clients: int = typer.Option(8, help="Concurrent client processes (C)."),
    seconds: float = typer.Option(30.0, help="Measured window, after the warm-up."),
    warmup_s: float = typer.Option(5.0),
    mix: str = typer.Option("dashboard", help="dashboard, or one report kind alone."),
    reporting_currency: str = typer.Option(
        "USD", help='reportingCurrency of every report; "" asks without one.'
    ),
) -> None:
    """W API processes under C concurrent clients (Zipf merchants): reports per API
    CPU-second, latency percentiles per report kind, engine CPU per report (JSON)."""
    import json

    from bench.api_load import LoadConfig, run

    config = LoadConfig(
        events, merchants, workers, clients, seconds, warmup_s, mix,
        reporting_currency=reporting_currency,
    )  # fmt: skip
    print(json.dumps(run(config), indent=2))


def curves(
    query_events: str = typer.Option("25000,50000,100000", help="Raw sizes for query p95."),
    requests: int = typer.Option(40, help="Requests per report, path and run."),
    batches: str = typer.Option("500,2000,5000", help="Indexer batch sizes (bulk_max_docs)."),
    index_events: int = typer.Option(20_000, help="Events per indexer run."),
    rollup_events: str = typer.Option("10000,20000,40000", help="Raw events per rollup run."),
    runs: int = typer.Option(3, help="Runs per point (the point is their median)."),
    stages: str = typer.Option("indexer,rollups,query", help="Which curves to measure."),
    out: Path = typer.Option(Path("docs/bench"), help="Where the JSON and PNG plots go."),
    stem: str = typer.Option("curves", help="File names: <stem>.json, <stem>-<curve>.png."),
) -> None:
    """Query p95 (rollup vs raw) vs data size, indexer CPU-µs/event vs batch size and rollup
    job cost vs volume: medians of several runs with same-run baselines, JSON + PNGs."""
    import shlex
    import signal
    import sys

    from bench.curves import CurvesConfig, run

    # SIGTERM (a timeout, a CI cancel) must still stop the engines this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from pulse.logs import configure_logging
    from pulse.settings import get_settings

    def sizes(text: str) -> tuple[int, ...]:
        return tuple(int(n) for n in text.split(",") if n.strip())

    config = CurvesConfig(
        query_events=sizes(query_events), requests=requests, index_batches=sizes(batches),
        index_events=index_events, rollup_events=sizes(rollup_events), runs=runs,
        stages=tuple(s.strip() for s in stages.split(",") if s.strip()),
    )  # fmt: skip
    settings = get_settings()
    configure_logging("WARNING", settings.log_json)
    command = "pulse bench curves " + shlex.join(sys.argv[3:] if len(sys.argv) > 3 else [])
    run(settings, config, out, stem, command.strip())
