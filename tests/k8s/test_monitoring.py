"""k8s/monitoring: the PrometheusRule, PodMonitors and the Grafana dashboard, as rendered.

prometheus-operator's CRDs are not in ../shared/k8s-crds, so the custom resources are checked
by a strict schema of the fields Pulse uses (unknown fields are errors), the rule groups by
`promtool check rules` and `promtool test rules` (tests/k8s/alerts_test.yaml: each alert fires
when it should and stays silent otherwise), the dashboard's queries by promtool's PromQL
parser, and every `pulse_*` name in rules and dashboard against the metrics the code exports.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry

from tests.k8s.manifests import REPO, Manifest, containers, find, labels_match, one, workloads

ALERTS_TEST = Path(__file__).with_name("alerts_test.yaml")
DASHBOARD = REPO / "k8s" / "monitoring" / "dashboards" / "pulse.json"
OPERATIONS = REPO / "docs" / "operations.md"

_STR = {"type": "string"}
_LABELS = {"type": "object", "additionalProperties": _STR}
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": _LABELS,
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": _STR,
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": _STR},
                },
            },
        },
    },
}
_META = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _STR, "namespace": _STR, "labels": _LABELS},
    "additionalProperties": False,
}
_RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "action": {"enum": ["replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep"]},
        "sourceLabels": {"type": "array", "items": _STR},
        "targetLabel": _STR,
        "replacement": _STR,
        "regex": _STR,
        "separator": _STR,
    },
}
_UNITS = "".join(f"([0-9]+{unit})?" for unit in ("y", "w", "d", "h", "m", "s", "ms"))
_DURATION = {"type": "string", "pattern": f"^(0|{_UNITS})$"}
POD_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": _SELECTOR,
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port", "path"],
                        "additionalProperties": False,
                        "properties": {
                            "port": _STR,
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": _DURATION,
                            "relabelings": {"type": "array", "items": _RELABEL},
                        },
                    },
                },
            },
        },
    },
}
PROMETHEUS_RULE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": _STR,
                            "interval": _DURATION,
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["alert", "expr", "labels", "annotations"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^Pulse[A-Za-z]+$"},
                                        "expr": _STR,
                                        "for": _DURATION,
                                        "labels": {
                                            "type": "object",
                                            "required": ["severity"],
                                            "properties": {
                                                "severity": {"enum": ["critical", "warning"]}
                                            },
                                            "additionalProperties": _STR,
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "required": ["summary", "runbook_url"],
                                            "additionalProperties": _STR,
                                        },
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}
SCHEMAS = {"PodMonitor": POD_MONITOR, "PrometheusRule": PROMETHEUS_RULE}


def schema_errors(doc: Manifest) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMAS[doc["kind"]])
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:  # the setup installs Debian's prometheus package: missing is a failure
        pytest.fail("promtool is not on PATH (make tools installs Debian's prometheus package)")
    return path


def rule_groups(docs: list[Manifest]) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = one(docs, "PrometheusRule", "pulse")["spec"]["groups"]
    return groups


def alerts(docs: list[Manifest]) -> list[dict[str, Any]]:
    return [rule for group in rule_groups(docs) for rule in group["rules"]]


def write_rules(directory: Path, groups: list[dict[str, Any]]) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_monitoring_resources_validate(docs: list[Manifest]) -> None:
    monitors = find(docs, "PodMonitor")
    assert len(monitors) >= 5
    for doc in [*monitors, *find(docs, "PrometheusRule")]:
        assert schema_errors(doc) == [], f"{doc['kind']}/{doc['metadata']['name']}"
        assert doc["metadata"]["namespace"] == "pulse"


def test_schemas_reject_mistakes(docs: list[Manifest]) -> None:
    monitor = copy.deepcopy(one(docs, "PodMonitor", "pulse-indexer"))
    monitor["spec"]["podMetricsEndpoint"] = monitor["spec"].pop("podMetricsEndpoints")
    assert schema_errors(monitor)
    rule = copy.deepcopy(one(docs, "PrometheusRule", "pulse"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    assert schema_errors(rule)
    del rule["spec"]["groups"][0]["rules"][1]["annotations"]["runbook_url"]
    assert schema_errors(rule)


@pytest.fixture
def prod(rendered: dict[str, list[Manifest]]) -> list[Manifest]:
    """promtool runs take seconds: run them on prod; both overlays render the same rules."""
    assert rule_groups(rendered["dev"]) == rule_groups(rendered["prod"])
    return rendered["prod"]


def test_promtool_checks_the_rules(prod: list[Manifest], tmp_path: Path) -> None:
    docs = prod
    rules = write_rules(tmp_path, rule_groups(docs))
    result = run(promtool(), "check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts(docs))} rules found" in result.stdout
    broken = copy.deepcopy(rule_groups(docs))
    broken[0]["rules"][0]["expr"] = "sum(up{job=}"
    bad = run(promtool(), "check", "rules", str(write_rules(tmp_path, broken)), cwd=tmp_path)
    assert bad.returncode != 0


def test_each_alert_fires_when_it_should_and_not_otherwise(
    prod: list[Manifest], tmp_path: Path
) -> None:
    docs = prod
    write_rules(tmp_path, rule_groups(docs))
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    result = run(promtool(), "test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    fires: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts(docs)}
    assert fires == names, f"alerts never shown to fire: {names - fires}"
    assert silent == names, f"alerts never shown to stay silent: {names - silent}"


def test_a_broken_rule_fails_its_unit_test(prod: list[Manifest], tmp_path: Path) -> None:
    """The rule tests can fail: a threshold moved makes promtool report the alert."""
    docs = prod
    broken = copy.deepcopy(rule_groups(docs))
    for group in broken:
        for rule in group["rules"]:
            if rule["alert"] == "PulseRollupWatermarkBehind":
                rule["expr"] = rule["expr"].replace("1800", "3600")
    write_rules(tmp_path, broken)
    cases = yaml.safe_load(ALERTS_TEST.read_text())
    cases["tests"] = [  # only that alert's cases: promtool takes seconds per file
        case
        for case in cases["tests"]
        if {c["alertname"] for c in case["alert_rule_test"]} == {"PulseRollupWatermarkBehind"}
    ]
    (tmp_path / ALERTS_TEST.name).write_text(yaml.safe_dump(cases))
    result = run(promtool(), "test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert result.returncode != 0 and "PulseRollupWatermarkBehind" in result.stdout + result.stderr


def test_every_alert_has_a_runbook(docs: list[Manifest]) -> None:
    text = OPERATIONS.read_text()
    headings = re.findall(r"^#+ (.+)$", text, re.M)
    for rule in alerts(docs):
        name = rule["alert"]
        assert name in headings, f"docs/operations.md has no section {name}"
        assert rule["annotations"]["runbook_url"].endswith("operations.md#" + name.lower())
        section = text.split(f"### {name}\n", 1)[1].split("\n### ", 1)[0]
        assert "Means" in section and "Do" in section, f"{name}: what it means, what to do"


def test_pod_monitors_select_workloads_and_ports(docs: list[Manifest]) -> None:
    selected = set()
    for monitor in find(docs, "PodMonitor"):
        selector = monitor["spec"]["selector"]
        if "strimzi.io/cluster" in selector.get("matchLabels", {}):
            # Strimzi creates those pods: the cluster name must be ours.
            assert one(docs, "Kafka", selector["matchLabels"]["strimzi.io/cluster"])
            continue
        matched = [
            (doc, template)
            for doc, template in workloads(docs)
            if _selects(selector, template["metadata"]["labels"])
        ]
        assert matched, f"{monitor['metadata']['name']} selects no workload"
        for doc, template in matched:
            selected.add(doc["metadata"]["name"])
            ports = {p.get("name") for c in containers(template) for p in c.get("ports", [])}
            for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                assert endpoint["port"] in ports, f"{doc['metadata']['name']}: {endpoint}"
    long_running = {"pulse-api", "pulse-collector", "pulse-indexer", "pulse-rollups"}
    assert long_running | {"pulse-fluent-bit-node", "pulse-fluent-bit-edge"} <= selected


def test_rules_and_dashboard_use_the_jobs_the_monitors_set(docs: list[Manifest]) -> None:
    jobs = {
        relabel["replacement"]
        for monitor in find(docs, "PodMonitor")
        for endpoint in monitor["spec"]["podMetricsEndpoints"]
        for relabel in endpoint.get("relabelings", [])
        if relabel.get("targetLabel") == "job"
    }
    exprs = [rule["expr"] for rule in alerts(docs)] + dashboard_exprs()
    used = {job for expr in exprs for job in re.findall(r'job=~?"([^"]+)"', expr)}
    assert used and {j for j in used if "*" not in j} <= jobs, used - jobs


def test_dashboard_is_loaded_and_its_queries_parse(prod: list[Manifest], tmp_path: Path) -> None:
    docs = prod
    (config_map,) = [
        d
        for d in find(docs, "ConfigMap")
        if d["metadata"]["name"].startswith("pulse-grafana-dashboard")
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["pulse.json"])
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert len(exprs) >= 15
    for section in ("Ingest", "Rollups", "API", "Engines"):
        assert section in [p["title"] for p in panels if p["type"] == "row"]
    # promtool parses PromQL only inside rule files: one recording rule per query.
    rules = [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]
    path = write_rules(tmp_path, [{"name": "dashboard", "rules": rules}])
    result = run(promtool(), "check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def test_every_pulse_metric_named_is_exported(prod: list[Manifest]) -> None:
    docs = prod
    text = "\n".join([rule["expr"] for rule in alerts(docs)] + dashboard_exprs())
    named = set(re.findall(r"\b(pulse_[a-z_]+)", text))
    series = {_series_base(n) for n in named}
    exported = exported_metric_names()
    missing = {n for n in series if n not in exported}
    assert not missing, f"named in rules or dashboard but exported by no component: {missing}"


def exported_metric_names() -> set[str]:
    """Every sample name the components' registries expose (counters with _total)."""
    from api.app import RequestMetrics
    from indexer.metrics import Metrics
    from ingest.collector_metrics import CollectorMetrics
    from rollups.metrics import RollupMetrics

    names: set[str] = set()
    registries: list[CollectorRegistry] = [
        Metrics().registry,
        RollupMetrics().registry,
        RequestMetrics().registry,
        CollectorMetrics().registry,
    ]
    for registry in registries:
        for family in registry.collect():
            names.add(family.name)
            names |= {s.name for s in family.samples}
            if family.type == "counter":
                names.add(family.name + "_total")
    return names


def _series_base(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith("_seconds" + suffix):
            return name[: -len(suffix)]
    return name


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not labels_match(selector.get("matchLabels", {}), labels):
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
    return True
