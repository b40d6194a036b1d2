"""The Fluent Bit configurations in ingest/fluent-bit/: every key exists, and the pipeline
writes what DESIGN.md's event contract needs, durably.

Fluent Bit cannot run here, so key names are checked against the plugin option tables read
from Fluent Bit's source (../shared/fluent-bit-config-keys.json) and, for options common to
all plugins and librdkafka pass-through options, against the allowlists below, each taken
from the page of the documentation named next to it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
CONFIG_DIR = REPO / "ingest" / "fluent-bit"
K8S_COPY_DIR = REPO / "k8s" / "base" / "fluent-bit"
CONFIGS = {"node": CONFIG_DIR / "node-tail.yaml", "edge": CONFIG_DIR / "edge-http.yaml"}

# docs.fluentbit.io: administration/configuring-fluent-bit/yaml/service-section
SERVICE_KEYS = frozenset(
    {
        "flush", "grace", "daemon", "log_level", "log_file", "coro_stack_size",
        "http_server", "http_listen", "http_port", "health_check", "hc_errors_count",
        "hc_retry_failure_count", "hc_period", "hot_reload", "parsers_file", "plugins_file",
        "streams_file", "scheduler.base", "scheduler.cap", "dns.mode", "dns.resolver",
        "dns.prefer_ipv4", "dns.prefer_ipv6", "json.convert_nan_to_null",
        "json.escape_unicode", "storage.path", "storage.sync", "storage.checksum",
        "storage.metrics", "storage.max_chunks_up", "storage.backlog.mem_limit",
        "storage.delete_irrecoverable_chunks",
    }
)  # fmt: skip
# docs.fluentbit.io: yaml/pipeline-section ("all input plugins support"), buffering-and-storage,
# backpressure, multithreading.
COMMON_INPUT_KEYS = frozenset(
    {
        "name", "tag", "alias", "log_level", "log_suppress_interval", "routable",
        "mem_buf_limit", "listen", "port", "threaded", "storage.type",
        "storage.pause_on_chunks_overlimit",
    }
)  # fmt: skip
# docs.fluentbit.io: yaml/pipeline-section ("outputs"), scheduling-and-retries,
# buffering-and-storage.
COMMON_OUTPUT_KEYS = frozenset(
    {
        "name", "match", "match_regex", "alias", "log_level", "log_suppress_interval",
        "retry_limit", "storage.total_limit_size", "workers",
    }
)  # fmt: skip
# docs.fluentbit.io: yaml/parsers-section, pipeline/parsers/configuring-parser
PARSER_KEYS = frozenset(
    {"name", "format", "regex", "time_key", "time_format", "time_keep", "types", "decode_field"}
)
# librdkafka CONFIGURATION.md (producer-side global and topic properties); out_kafka passes
# every `rdkafka.<property>` through to librdkafka unchanged.
RDKAFKA_PROPERTIES = frozenset(
    {
        "acks", "request.required.acks", "enable.idempotence", "compression.codec",
        "compression.type", "compression.level", "linger.ms", "queue.buffering.max.ms",
        "batch.num.messages", "batch.size", "message.timeout.ms", "delivery.timeout.ms",
        "queue.buffering.max.kbytes", "queue.buffering.max.messages", "retries",
        "message.send.max.retries", "retry.backoff.ms", "retry.backoff.max.ms",
        "max.in.flight", "max.in.flight.requests.per.connection", "request.timeout.ms",
        "socket.keepalive.enable", "socket.timeout.ms", "message.max.bytes",
        "security.protocol", "sasl.mechanisms", "ssl.ca.location", "client.rack",
        "statistics.interval.ms", "partitioner",
    }
)  # fmt: skip
TRUE = {True, "on", "true", "yes", "1"}


def _size_bytes(text: str) -> int:
    """Fluent Bit unit sizes: 10G, 64M, 256k, 1M (powers of 1024)."""
    match = re.fullmatch(r"(\d+)\s*([kKmMgG]?)[bB]?", str(text))
    assert match, f"not a Fluent Bit size: {text!r}"
    power = "kmg".find(match[2].lower()) + 1 if match[2] else 0
    size: int = int(match[1]) * 1024**power
    return size


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


@pytest.fixture(scope="module")
def plugin_keys() -> dict[str, frozenset[str]]:
    path = SHARED / "fluent-bit-config-keys.json"
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared/ directory beside the repository)")
    plugins = json.loads(path.read_text())["plugins"]
    return {name: frozenset(k.lower() for k in keys) for name, keys in plugins.items()}


@pytest.fixture(params=sorted(CONFIGS), scope="module")
def config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(CONFIGS[request.param])


def _plugin_key_ok(key: str, known: frozenset[str]) -> bool:
    if key in known:
        return True
    prefixes = [k for k in known if k.endswith((".", "_"))]  # str_prefix options
    return any(key.startswith(p) for p in prefixes) and not key.startswith("rdkafka.")


def _unknown_keys(
    section: dict[str, Any], plugin: str, common: frozenset[str], keys: dict[str, frozenset[str]]
) -> list[str]:
    assert plugin in keys, f"no key table for plugin {plugin}"
    unknown = []
    for raw_key in section:
        key = raw_key.lower()
        if key in common or _plugin_key_ok(key, keys[plugin]):
            continue
        rdkafka = key.removeprefix("rdkafka.") if key.startswith("rdkafka.") else None
        if plugin == "out_kafka" and rdkafka in RDKAFKA_PROPERTIES:
            continue
        unknown.append(raw_key)
    return unknown


def test_only_known_sections(config: dict[str, Any]) -> None:
    assert set(config) <= {"service", "parsers", "pipeline", "env", "includes"}
    assert set(config["pipeline"]) <= {"inputs", "filters", "outputs"}


def test_service_keys_exist(config: dict[str, Any]) -> None:
    assert {k.lower() for k in config["service"]} <= SERVICE_KEYS


def test_plugin_keys_exist(config: dict[str, Any], plugin_keys: dict[str, frozenset[str]]) -> None:
    pipeline = config["pipeline"]
    for section in pipeline.get("inputs", []):
        plugin = f"in_{section['name']}"
        assert _unknown_keys(section, plugin, COMMON_INPUT_KEYS, plugin_keys) == [], plugin
    for section in pipeline.get("filters", []):
        plugin = f"filter_{section['name']}"
        common = COMMON_INPUT_KEYS | {"match", "match_regex"}
        assert _unknown_keys(section, plugin, common, plugin_keys) == [], plugin
    for section in pipeline.get("outputs", []):
        plugin = f"out_{section['name']}"
        assert _unknown_keys(section, plugin, COMMON_OUTPUT_KEYS, plugin_keys) == [], plugin
    for parser in config.get("parsers", []):
        assert {k.lower() for k in parser} <= PARSER_KEYS


def test_key_check_rejects_misspellings(plugin_keys: dict[str, frozenset[str]]) -> None:
    """The checker itself: a typo in a plugin key, a common key or an rdkafka key is caught."""
    bad = {"name": "kafka", "Timestamp_Formats": "iso8601", "retry_limits": 1}
    bad["rdkafka.request.required.ack"] = "all"
    assert len(_unknown_keys(bad, "out_kafka", COMMON_OUTPUT_KEYS, plugin_keys)) == 3


def test_health_and_metrics_endpoint_on(config: dict[str, Any]) -> None:
    service = config["service"]
    assert service["http_server"] in TRUE
    assert service["health_check"] in TRUE
    assert int(service["http_port"]) == 2020
    assert service["storage.metrics"] in TRUE


def test_every_input_buffers_on_the_filesystem(config: dict[str, Any]) -> None:
    assert str(config["service"]["storage.path"]).startswith("/var/lib/")
    for section in config["pipeline"]["inputs"]:
        assert section["storage.type"] == "filesystem"
        # Pause the input instead of dropping when the buffer limit is reached.
        assert section["storage.pause_on_chunks_overlimit"] in TRUE


def test_output_is_the_kafka_contract(config: dict[str, Any]) -> None:
    (out,) = config["pipeline"]["outputs"]
    assert out["name"] == "kafka"
    assert out["topics"] == "events.raw"
    assert out["brokers"] == "${PULSE_KAFKA_BOOTSTRAP}"
    assert out["format"] == "json"
    assert out["timestamp_key"] == "@timestamp"
    assert out["timestamp_format"] == "iso8601"
    assert out["message_key_field"] == "event_id", "same key as pulse's collector"


def test_output_is_durable(config: dict[str, Any]) -> None:
    (out,) = config["pipeline"]["outputs"]
    assert str(out["retry_limit"]) in {"no_limits", "False", "false", "off"}
    assert _size_bytes(out["storage.total_limit_size"]) >= 5 * 1024**3
    assert str(out["rdkafka.request.required.acks"]) in {"all", "-1"}
    assert out["rdkafka.enable.idempotence"] in TRUE
    assert out["rdkafka.compression.codec"] in {"lz4", "zstd", "snappy", "gzip"}
    assert int(out["rdkafka.linger.ms"]) > 0
    assert int(out["rdkafka.batch.num.messages"]) >= 1000
    # out_kafka acknowledges a chunk once librdkafka queued it and only logs failed
    # deliveries: a finite message timeout would drop events during a long Kafka outage.
    assert int(out["rdkafka.message.timeout.ms"]) == 0
    assert int(out["rdkafka.queue.buffering.max.kbytes"]) <= 256 * 1024


def test_node_config_tails_json_event_logs() -> None:
    config = load(CONFIGS["node"])
    (tail,) = config["pipeline"]["inputs"]
    assert tail["name"] == "tail"
    assert str(tail["path"]).startswith("/var/log/pulse-events/")
    parsers = {p["name"]: p for p in config["parsers"]}
    assert parsers[tail["parser"]]["format"] == "json"
    assert str(tail["db"]).startswith("/var/lib/"), "offsets survive restarts"
    assert tail["read_from_head"] in TRUE, "files found at start are read whole"
    # The contract allows 256 KiB events; longer lines are truncated and dead-lettered.
    assert _size_bytes(tail["buffer_max_size"]) >= 256 * 1024
    assert tail["truncate_long_lines"] in TRUE
    assert tail.get("skip_long_lines") not in TRUE
    (out,) = config["pipeline"]["outputs"]
    assert re.fullmatch(out["match"].replace(".", r"\.").replace("*", ".*"), tail["tag"])


def test_edge_config_receives_http() -> None:
    config = load(CONFIGS["edge"])
    (http,) = config["pipeline"]["inputs"]
    assert http["name"] == "http"
    assert int(http["port"]) == 9880
    assert int(http["successful_response_code"]) == 201
    assert "add_remote_addr" not in http, "would add a field that is not in the event"
    (out,) = config["pipeline"]["outputs"]
    assert out["match"] == "*", "in_http tags records with the request path"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.values()))
def test_kubernetes_copy_is_identical(name: str) -> None:
    """kustomize loads files only below k8s/base, so the ConfigMaps use copies."""
    copy = K8S_COPY_DIR / name
    assert copy.exists(), f"missing {copy}"
    assert copy.read_bytes() == (CONFIG_DIR / name).read_bytes(), (
        f"k8s copy drifted: cp ingest/fluent-bit/{name} k8s/base/fluent-bit/{name}"
    )
