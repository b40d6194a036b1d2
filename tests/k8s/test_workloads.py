"""Pulse's own workloads as rendered by each overlay: the right commands and settings, secure
and bounded containers, zero-downtime rollouts, probes, autoscaling, references that exist."""

from __future__ import annotations

import re

from pulse.settings import Settings
from tests.k8s.manifests import (
    REPO,
    Manifest,
    config_map_data,
    containers,
    find,
    labels_match,
    one,
    pod_template,
    workloads,
)

PULSE_IMAGE = "ghcr.io/example/pulse"
SUBCOMMANDS = {"api", "collector", "indexer", "rollups", "ilm", "reprocess"}
# Created by operators, never committed (docs/operations.md says how): engine credentials,
# and the time range of one reprocessing run.
EXTERNAL = {"ConfigMap": {"pulse-reprocess-range"}, "Secret": {"pulse-engines"}}


def pulse_containers(docs: list[Manifest]) -> list[tuple[Manifest, Manifest]]:
    return [
        (doc, c)
        for doc, template in workloads(docs)
        for c in containers(template)
        if c["image"].startswith(PULSE_IMAGE + ":")
    ]


def test_every_component_runs_its_pulse_command(docs: list[Manifest]) -> None:
    seen = set()
    for _, c in pulse_containers(docs):
        assert c["command"] == ["pulse"]
        assert c["args"][0] in SUBCOMMANDS
        seen.add(c["args"][0])
    assert seen == SUBCOMMANDS
    ilm = containers(pod_template(one(docs, "CronJob", "pulse-ilm")))[0]
    assert ilm["args"] == ["ilm", "run"]
    reprocess = containers(pod_template(one(docs, "CronJob", "pulse-reprocess")))[0]
    assert {"--from", "--to", "--yes"} <= set(reprocess["args"])


def test_pulse_config_holds_only_real_settings(docs: list[Manifest]) -> None:
    known = {f"PULSE_{name.upper()}" for name in Settings.model_fields}
    data = config_map_data(docs, "pulse-config")
    assert set(data) <= known, set(data) - known
    Settings.model_validate({k.removeprefix("PULSE_").lower(): v for k, v in data.items()})


def test_pulse_containers_get_both_engines(docs: list[Manifest]) -> None:
    for _, c in pulse_containers(docs):
        config_maps = [s["configMapRef"]["name"] for s in c["envFrom"] if "configMapRef" in s]
        assert [n for n in config_maps if n.startswith("pulse-config-")], c["name"]
        env = {e["name"]: e for e in c.get("env", [])}
        ref = env["PULSE_OPENSEARCH_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "pulse-engines", "key": "opensearch-url"}
    assert "PULSE_KAFKA_BOOTSTRAP" in config_map_data(docs, "pulse-config")


def test_containers_are_bounded_and_locked_down(docs: list[Manifest]) -> None:
    for doc, template in workloads(docs):
        pod_security = template["spec"].get("securityContext", {})
        assert pod_security.get("seccompProfile") == {"type": "RuntimeDefault"}
        for c in containers(template):
            where = f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}"
            assert not c["image"].endswith(":latest") and ":" in c["image"], where
            resources = c["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert "memory" in resources["limits"], where
            security = c["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            if doc["metadata"]["name"] != "pulse-fluent-bit-node":
                assert pod_security.get("runAsNonRoot") is True, where
                assert "add" not in security["capabilities"], where


def test_rollouts_never_reduce_capacity(docs: list[Manifest]) -> None:
    for deployment in find(docs, "Deployment"):
        rolling = deployment["spec"]["strategy"]["rollingUpdate"]
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        assert rolling["maxUnavailable"] == 0, deployment["metadata"]["name"]
        pdbs = [
            p
            for p in find(docs, "PodDisruptionBudget")
            if labels_match(p["spec"]["selector"]["matchLabels"], _pod_labels(deployment))
        ]
        assert len(pdbs) == 1, f"one PodDisruptionBudget for {deployment['metadata']['name']}"


def _pod_labels(doc: Manifest) -> dict[str, str]:
    labels: dict[str, str] = pod_template(doc)["metadata"]["labels"]
    return labels


def test_autoscaled_deployments_leave_replicas_to_the_autoscaler(docs: list[Manifest]) -> None:
    targets = [h["spec"]["scaleTargetRef"]["name"] for h in find(docs, "HorizontalPodAutoscaler")]
    targets += [s["spec"]["scaleTargetRef"]["name"] for s in find(docs, "ScaledObject")]
    assert len(targets) == len(set(targets)), "one autoscaler per Deployment"
    for name in targets:
        deployment = one(docs, "Deployment", name)
        assert "replicas" not in deployment["spec"], f"{name}: `kubectl apply` would reset it"
    for hpa in find(docs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_api_is_probed_served_and_scaled(docs: list[Manifest]) -> None:
    api = one(docs, "Deployment", "pulse-api")
    (c,) = containers(pod_template(api))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == int(config_map_data(docs, "pulse-config")["PULSE_API_PORT"])
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    startup_budget = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
    assert startup_budget >= 30
    service = one(docs, "Service", "pulse-api")
    assert labels_match(service["spec"]["selector"], _pod_labels(api))
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    one(docs, "HorizontalPodAutoscaler", "pulse-api")


def test_collector_is_probed_served_and_scaled(docs: list[Manifest]) -> None:
    """The public, authenticated edge: its port is the configured one, it reaches the key
    store (PULSE_OPENSEARCH_URL, checked for every pulse container) and Kafka, it scales."""
    collector = one(docs, "Deployment", "pulse-collector")
    (c,) = containers(pod_template(collector))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    config = config_map_data(docs, "pulse-config")
    assert ports["http"] == int(config["PULSE_COLLECTOR_PORT"])
    assert config["PULSE_COLLECTOR_HOST"] == "0.0.0.0"
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = one(docs, "Service", "pulse-collector")
    assert labels_match(service["spec"]["selector"], _pod_labels(collector))
    one(docs, "HorizontalPodAutoscaler", "pulse-collector")


def _topic_partitions(docs: list[Manifest], topic: str) -> int:
    partitions: int = one(docs, "KafkaTopic", topic)["spec"]["partitions"]
    return partitions


def test_indexer_fits_the_partitions_and_its_shutdown(docs: list[Manifest]) -> None:
    indexer = one(docs, "Deployment", "pulse-indexer")
    partitions = _topic_partitions(docs, "events.raw")
    replicas = indexer["spec"].get("replicas")
    assert replicas is None or 1 <= replicas <= partitions
    for scaled in find(docs, "ScaledObject"):
        assert scaled["spec"]["maxReplicaCount"] <= partitions
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["metadata"]["topic"] == "events.raw"
        assert trigger["metadata"]["consumerGroup"] == Settings().indexer_group
        assert trigger["metadata"]["allowIdleConsumers"] == "false"
    shutdown = float(config_map_data(docs, "pulse-config")["PULSE_SHUTDOWN_TIMEOUT_S"])
    grace = pod_template(indexer)["spec"]["terminationGracePeriodSeconds"]
    assert grace >= shutdown + 5


def test_rollups_and_lifecycle_jobs(docs: list[Manifest]) -> None:
    rollups = one(docs, "Deployment", "pulse-rollups")
    # Sharded workers (docs/decisions/0220): several, and never more than there are shards.
    shards = int(config_map_data(docs, "pulse-config")["PULSE_ROLLUP_SHARDS"])
    assert 2 <= rollups["spec"]["replicas"] <= shards
    ilm = one(docs, "CronJob", "pulse-ilm")
    assert ilm["spec"]["concurrencyPolicy"] == "Forbid"
    assert not ilm["spec"].get("suspend", False)
    reprocess = one(docs, "CronJob", "pulse-reprocess")
    assert reprocess["spec"]["suspend"] is True, "a template: never scheduled by itself"
    assert reprocess["spec"]["concurrencyPolicy"] == "Forbid"
    (c,) = containers(pod_template(reprocess))
    env = {e["name"] for e in c["env"]}
    for arg in c["args"]:
        for var in re.findall(r"\$\((\w+)\)", arg):
            assert var in env, f"reprocess argument {arg} needs env {var}"


def test_every_reference_resolves(docs: list[Manifest]) -> None:
    present = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for doc, template in workloads(docs):
        for kind, name in _references(template):
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            assert (kind, name) in present or name in EXTERNAL[kind], f"{where}: {kind} {name}"
        service_account = template["spec"].get("serviceAccountName")
        assert ("ServiceAccount", service_account) in present


def test_external_objects_are_documented() -> None:
    operations = (REPO / "docs" / "operations.md").read_text()
    for names in EXTERNAL.values():
        for name in names:
            assert name in operations, f"docs/operations.md must say how to create {name}"


def test_operations_guide_has_the_runbooks() -> None:
    headings = re.findall(r"^#+ (.+)$", (REPO / "docs" / "operations.md").read_text(), re.M)
    for wanted in ("Deploy", "Scale", "Upgrade with zero downtime", "Consumer lag"):
        assert wanted in headings
    for wanted in ("DLQ growth", "Engine red or yellow", "Reprocessing"):
        assert wanted in headings


def _references(template: Manifest) -> list[tuple[str, str]]:
    refs = []
    for volume in template["spec"].get("volumes", []):
        if "configMap" in volume:
            refs.append(("ConfigMap", volume["configMap"]["name"]))
        if "secret" in volume:
            refs.append(("Secret", volume["secret"]["secretName"]))
    for c in containers(template):
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                refs.append(("ConfigMap", source["configMapRef"]["name"]))
            if "secretRef" in source:
                refs.append(("Secret", source["secretRef"]["name"]))
        for env in c.get("env", []):
            value_from = env.get("valueFrom", {})
            if "configMapKeyRef" in value_from:
                refs.append(("ConfigMap", value_from["configMapKeyRef"]["name"]))
            if "secretKeyRef" in value_from:
                refs.append(("Secret", value_from["secretKeyRef"]["name"]))
    return refs


def test_selectors_select_something(docs: list[Manifest]) -> None:
    pods = [_pod_labels(doc) for doc, _ in workloads(docs) if doc["kind"] != "CronJob"]
    selectors = [s["spec"]["selector"] for s in find(docs, "Service")]
    selectors += [p["spec"]["selector"]["matchLabels"] for p in find(docs, "PodDisruptionBudget")]
    for policy in find(docs, "NetworkPolicy"):
        labels = policy["spec"]["podSelector"].get("matchLabels", {})
        if labels and not any(k.startswith("strimzi.io/") for k in labels):
            selectors.append(labels)
    for selector in selectors:
        assert any(labels_match(selector, p) for p in pods), f"{selector} selects no pod"


def test_metrics_are_scraped(docs: list[Manifest]) -> None:
    scraped = set()
    for doc, template in workloads(docs):
        annotations = template["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true":
            continue
        ports = {p["containerPort"] for c in containers(template) for p in c.get("ports", [])}
        assert int(annotations["prometheus.io/port"]) in ports, doc["metadata"]["name"]
        assert annotations["prometheus.io/path"].startswith("/")
        scraped.add(doc["metadata"]["name"])
    expected = {"pulse-api", "pulse-indexer", "pulse-fluent-bit-node", "pulse-fluent-bit-edge"}
    assert expected <= scraped
    kafka = one(docs, "Kafka", "pulse")
    assert "metricsConfig" in kafka["spec"]["kafka"]
    assert "kafkaExporter" in kafka["spec"], "consumer-group lag metrics"


def test_network_policies(docs: list[Manifest]) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in find(docs, "NetworkPolicy")}
    deny = policies["default-deny-ingress"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    for name, workload in (
        ("allow-api", "pulse-api"),
        ("allow-collector", "pulse-collector"),
        ("allow-edge", "pulse-fluent-bit-edge"),
    ):
        template = pod_template(one(docs, "Deployment", workload))
        assert labels_match(policies[name]["podSelector"]["matchLabels"], _pod_labels_of(template))
        names = {p["name"] for c in containers(template) for p in c.get("ports", [])}
        for rule in policies[name]["ingress"]:
            assert {p["port"] for p in rule["ports"]} <= names


def _pod_labels_of(template: Manifest) -> dict[str, str]:
    labels: dict[str, str] = template["metadata"]["labels"]
    return labels


def test_checked_in_files_hold_no_secrets_or_hosts() -> None:
    pattern = re.compile(r"(?<![a-z])(password|passwd|secret_key|token)\s*[:=]", re.IGNORECASE)
    for path in (REPO / "k8s").rglob("*"):
        if path.is_file() and "node_modules" not in path.parts:
            text = path.read_text()
            assert not pattern.search(text), f"{path} looks like it holds a credential"
            assert not re.search(r"^kind:\s*Secret\s*$", text, re.M), f"{path}: no Secrets"
            assert "localhost" not in text and "127.0.0.1" not in text, path
