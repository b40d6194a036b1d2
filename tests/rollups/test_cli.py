"""`pulse rollups` in the foreground until SIGTERM, and `pulse rollups backfill`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from opensearchpy import OpenSearch

from pulse.naming import Names
from pulse.settings import Settings
from rollups import shards, state
from rollups.cli import parse_instant
from tests.rollups.helpers import HOUR, assert_matches_oracle, make_events, write_raw

PULSE = str(Path(sys.executable).with_name("pulse"))


def _env(settings: Settings) -> dict[str, str]:
    assert settings.opensearch_url
    return {
        **os.environ,
        "PULSE_OPENSEARCH_URL": settings.opensearch_url,
        "PULSE_NAMESPACE": settings.namespace,
        "PULSE_ROLLUP_INTERVAL_S": "1",
        "PULSE_ROLLUP_VISIBILITY_MARGIN_S": "0",
        "PULSE_LOG_JSON": "false",
        "PULSE_STATE_DIR": settings.state_dir,
    }


def test_pulse_rollups_runs_until_sigterm_and_releases_the_lease(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    events = make_events(21, 300, base_ms + 8 * HOUR, base_ms + 10 * HOUR)
    write_raw(os_client, rsettings, names, events, int(time.time() * 1000))
    proc = subprocess.Popen([PULSE, "rollups"], env=_env(rsettings), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while state.watermark(os_client, names) is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_matches_oracle(os_client, names, events)
    docs = shards.read_all(os_client, names, rsettings.rollup_shards).values()
    assert all(d.cas is not None and d.expires_at() == 0 for d in docs)  # released on shutdown


def test_pulse_rollups_backfill_builds_the_range(
    rsettings: Settings, names: Names, os_client: OpenSearch, base_ms: int
) -> None:
    start = base_ms + 8 * HOUR
    events = make_events(22, 200, start, start + 2 * HOUR)
    write_raw(os_client, rsettings, names, events, int(time.time() * 1000))
    args = ["rollups", "backfill", "--from", str(start), "--to", str(start + 2 * HOUR)]
    done = subprocess.run(
        [PULSE, *args], env=_env(rsettings), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "backfilled 2 hours" in done.stderr
    assert_matches_oracle(os_client, names, events)


def test_instants_parse_as_iso_8601_or_epoch_millis() -> None:
    assert parse_instant("1700000000000") == 1_700_000_000_000
    assert parse_instant("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_instant("2023-11-14T23:13:20+01:00") == 1_700_000_000_000
    assert parse_instant("2023-11-14T22:13:20") == 1_700_000_000_000
