"""First render of the dashboard in a real browser, against a running stack (`pulse up --demo`).

    python -m bench.dashboard [--state-dir .pulse] [--runs 5] [--days 30]

Creates a key for the demo merchant, then loads ``/dashboard#range=<days>`` ``runs`` times in a
fresh headless chromium tab (key already in sessionStorage, as after sign-in) and reads the
page's own marks, in milliseconds from navigation start: ``pulse:rendered`` (the report's tiles
and chart are on screen), ``pulse:fetched`` (the report's answer arrived; the rest is the page's
own work) and ``pulse:breakdown`` (the breakdown table, its own request). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from api.keys import create_key
from bench.browser import launch
from bench.machine import describe, load_average
from pulse.clients import opensearch_client
from pulse.naming import names_for
from pulse.settings import Settings

RENDERED = "return (performance.getEntriesByName('pulse:rendered')[0] || {}).startTime ?? null"
FETCHED = "return performance.getEntriesByName('pulse:fetched')[0].startTime"
FIRST_QUERY = (
    "const e = performance.getEntriesByType('resource').find(e => e.name.endsWith('/graphql'));"
    " return [e.startTime, e.duration]"
)
BREAKDOWN = "return (performance.getEntriesByName('pulse:breakdown')[0] || {}).startTime ?? null"


def first_render_ms(driver: Any, url: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """One page load: navigation start -> report rendered, and the page's state then."""
    driver.get("about:blank")
    driver.get(url)
    deadline = time.monotonic() + timeout_s
    while (rendered := driver.execute_script(RENDERED)) is None:
        state = driver.execute_script("return document.body.dataset.state")
        if state not in ("loading", "signed-out", "ready", "empty") or time.monotonic() > deadline:
            raise RuntimeError(f"the dashboard did not render: state {state!r}")
        time.sleep(0.02)
    while (breakdown := driver.execute_script(BREAKDOWN)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the breakdown did not render")
        time.sleep(0.02)
    fetched = float(driver.execute_script(FETCHED))
    query_start, query_ms = driver.execute_script(FIRST_QUERY)  # the report's request
    points = driver.execute_script("return document.querySelectorAll('#points tbody tr').length")
    return {
        "rendered_ms": round(float(rendered), 1),
        "answered_ms": round(fetched, 1),  # the report's answer arrived (server + network)
        "asked_at_ms": round(float(query_start), 1),  # page, styles and scripts loaded
        "api_ms": round(float(query_ms), 1),  # the report request itself (the API's share)
        "client_ms": round(float(rendered) - fetched, 1),  # tiles and chart drawn
        "breakdown_ms": round(float(breakdown), 1),  # the breakdown table (its own request)
        "points": int(points),
    }


def run(state_dir: Path, runs: int, days: int, merchant: str = "m00000") -> dict[str, Any]:
    stack = json.loads((state_dir / "stack.json").read_text())
    settings = Settings()
    client = opensearch_client(stack["opensearch_url"])
    key, _ = create_key(client, names_for(settings), merchant, False, "bench dashboard")
    url = f"{stack['dashboard_url']}#range={days}&zone=UTC"
    with tempfile.TemporaryDirectory() as profile:
        driver = launch(Path(profile))
        try:
            driver.get(stack["dashboard_url"])
            driver.execute_script("sessionStorage.setItem('pulse.apiKey', arguments[0])", key)
            first_render_ms(driver, url)  # warm-up: the browser's cache holds the static files
            samples = [first_render_ms(driver, url) for _ in range(runs)]
        finally:
            driver.quit()
    times = [s["rendered_ms"] for s in samples]
    return {
        "days": days,
        "runs": samples,
        "median_ms": statistics.median(times),
        "max_ms": max(times),
        "median_client_ms": statistics.median(s["client_ms"] for s in samples),
        "median_asked_at_ms": statistics.median(s["asked_at_ms"] for s in samples),
        "median_api_ms": statistics.median(s["api_ms"] for s in samples),
        "median_breakdown_ms": statistics.median(s["breakdown_ms"] for s in samples),
        "load_average": load_average(),
        "machine": describe(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path, default=Path(".pulse"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--days", type=int, default=30, choices=(7, 30, 90))
    parser.add_argument("--merchant", default="m00000", help="whose dashboard (the demo's)")
    args = parser.parse_args()
    print(json.dumps(run(args.state_dir, args.runs, args.days, args.merchant), indent=2))


if __name__ == "__main__":
    main()
