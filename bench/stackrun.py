"""Run `pulse up` in a subprocess for a benchmark and find every process it started.

The bench measures the stack exactly as a user runs it: `pulse up` with a temporary state dir
and free ports, read back through its ``stack.json``, stopped with SIGINT like Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from pulse.engines import free_port, wait_until

STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0
# Engine stand-ins, recognised among `pulse up`'s children by their command line.
ENGINE_MARKERS = {"opensearch": "osmem", "kafka": "tansu"}


class StackError(RuntimeError):
    """`pulse up` did not come up (or died) during a benchmark."""


@dataclass
class RunningStack:
    """What a benchmark needs from a running `pulse up`."""

    info: dict[str, Any]
    env: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def graphql_url(self) -> str:
        return str(self.info["graphql_url"])

    @property
    def collector_url(self) -> str:
        return str(self.info["collector_url"])

    @property
    def kafka_bootstrap(self) -> str:
        return str(self.info["kafka_bootstrap"])

    @property
    def opensearch_url(self) -> str:
        return str(self.info["opensearch_url"])

    @property
    def namespace(self) -> str:
        return self.env.get("PULSE_NAMESPACE", "")


def stack_env(overrides: dict[str, str], state_dir: Path) -> dict[str, str]:
    """The environment of `pulse up`: the caller's, free ports, a private state dir."""
    env = dict(os.environ)
    env.update(
        PULSE_STATE_DIR=str(state_dir),
        PULSE_API_PORT=str(free_port()),
        PULSE_COLLECTOR_PORT=str(free_port()),
    )
    env.update(overrides)
    return env


@contextmanager
def pulse_up(overrides: dict[str, str]) -> Iterator[RunningStack]:
    """Start `pulse up`, yield once its API answers, then SIGINT it and wait for it to exit."""
    with tempfile.TemporaryDirectory(prefix="pulse-bench-") as tmp:
        env = stack_env(overrides, Path(tmp))
        proc = subprocess.Popen(
            [sys.executable, "-m", "pulsectl.cli", "up", "--state-dir", tmp],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield _wait_up(proc, Path(tmp) / "stack.json", env)
        finally:
            _stop(proc)


def _wait_up(proc: subprocess.Popen[bytes], path: Path, env: dict[str, str]) -> RunningStack:
    if not wait_until(lambda: path.exists() or proc.poll() is not None, STARTUP_TIMEOUT_S, 0.2):
        raise StackError(f"pulse up wrote no stack.json within {STARTUP_TIMEOUT_S:.0f}s")
    if proc.poll() is not None:
        raise StackError(f"pulse up exited with code {proc.returncode}")
    info: dict[str, Any] = json.loads(path.read_text())
    health = str(info["graphql_url"]).replace("/graphql", "/healthz")
    if not wait_until(lambda: _answers(health), STARTUP_TIMEOUT_S, 0.3):
        raise StackError("the API never answered /healthz")
    stack = RunningStack(info=info, env=env)
    stack.pids = component_pids(info)
    return stack


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def component_pids(info: dict[str, Any]) -> dict[str, int]:
    """Components from stack.json, plus the engines and the supervisor found by process tree."""
    pids = {str(k): int(v) for k, v in info.get("components", {}).items()}
    supervisor = int(info["pid"])
    pids["supervisor"] = supervisor
    for child in psutil.Process(supervisor).children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        for name, marker in ENGINE_MARKERS.items():
            if marker in cmdline and name not in pids:
                pids[name] = child.pid
    return pids


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()  # only the process this bench started; its children die with it
        proc.wait()
    time.sleep(0.1)
