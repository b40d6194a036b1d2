"""The embedded engines start, answer, and never outlive the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from kafka import KafkaAdminClient
from opensearchpy import OpenSearch

from pulse.engines import pid_alive, wait_until

STARTER = textwrap.dedent(
    """
    import sys, time
    from pulse.engines import start_embedded
    engines = start_embedded(None, None)
    print(engines.opensearch.pid, engines.kafka.pid, engines.opensearch.address,
          engines.kafka.address, flush=True)
    time.sleep(120)
    """
)


def test_engines_answer_real_clients(opensearch_url: str, kafka_bootstrap: str) -> None:
    assert OpenSearch(hosts=[opensearch_url]).info()["version"]["distribution"] == "opensearch"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert isinstance(admin.list_topics(), list)
    finally:
        admin.close()


def test_engines_die_with_their_parent() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", STARTER], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert proc.stdout is not None
    os_pid, kafka_pid, *_ = proc.stdout.readline().split()
    assert pid_alive(int(os_pid)) and pid_alive(int(kafka_pid))
    os.kill(proc.pid, signal.SIGKILL)  # no atexit, no cleanup: only the orphan guards act
    proc.wait()
    assert wait_until(lambda: not pid_alive(int(kafka_pid)), 10)
    assert wait_until(lambda: not pid_alive(int(os_pid)), 10)
