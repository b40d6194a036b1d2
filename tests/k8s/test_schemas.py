"""Every rendered object validates: core kinds against the pinned Kubernetes version's schemas
(kubernetes-validate, strict: unknown fields are errors), custom resources against the CRDs
in ../shared/k8s-crds (strict too), and KEDA's ScaledObject (no CRD here) field by field."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import kubernetes_validate

from tests.k8s.manifests import (
    CORE_GROUPS,
    KUBERNETES_VERSION,
    Manifest,
    crd_errors,
    find,
    group_of,
    one,
)

DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
WITHOUT_SCHEMA = {
    ("keda.sh/v1alpha1", "ScaledObject"),  # checked by test_scaled_object
    ("monitoring.coreos.com/v1", "PodMonitor"),  # checked by test_monitoring
    ("monitoring.coreos.com/v1", "PrometheusRule"),  # checked by test_monitoring
}


def core_errors(doc: Manifest) -> list[str]:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return [f"{path}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [exc.message]
    return []


def test_core_kinds_validate(docs: list[Manifest]) -> None:
    core = [d for d in docs if group_of(d) in CORE_GROUPS]
    assert len(core) > 20
    for doc in core:
        assert core_errors(doc) == [], f"{doc['kind']}/{doc['metadata']['name']}"


def test_custom_resources_validate(docs: list[Manifest], shared_dir: Path) -> None:
    custom = [d for d in docs if group_of(d) not in CORE_GROUPS]
    checked = 0
    for doc in custom:
        if (doc["apiVersion"], doc["kind"]) in WITHOUT_SCHEMA:
            continue
        assert crd_errors(doc) == [], f"{doc['kind']}/{doc['metadata']['name']}"
        checked += 1
    assert checked >= 6  # Kafka, 2 node pools, 2 topics, OpenSearchCluster


def test_names_are_valid(docs: list[Manifest]) -> None:
    for doc in docs:
        name = doc["metadata"]["name"]
        assert len(name) <= 253 and DNS_SUBDOMAIN.fullmatch(name), name
        if doc["kind"] in {"Service", "Namespace"}:
            assert len(name) <= 63 and "." not in name, name


def test_validators_reject_mistakes(rendered: dict[str, list[Manifest]], shared_dir: Path) -> None:
    """The checks above can fail: a typo, a wrong type, a missing required field."""
    docs = rendered["prod"]
    deployment = copy.deepcopy(one(docs, "Deployment", "pulse-api"))
    deployment["spec"]["replica"] = 3
    assert core_errors(deployment)
    probe = copy.deepcopy(one(docs, "Deployment", "pulse-api"))
    probe["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] = "5"
    assert core_errors(probe)
    topic = copy.deepcopy(one(docs, "KafkaTopic", "events.raw"))
    topic["spec"]["partition"] = topic["spec"].pop("partitions")
    assert crd_errors(topic)
    pool = copy.deepcopy(one(docs, "KafkaNodePool", "broker"))
    del pool["spec"]["storage"]
    assert crd_errors(pool)
    cluster = copy.deepcopy(one(docs, "OpenSearchCluster", "pulse-opensearch"))
    cluster["spec"]["nodePools"][0]["role"] = ["data"]
    assert crd_errors(cluster)


def test_scaled_object(rendered: dict[str, list[Manifest]]) -> None:
    """KEDA ScaledObject (prod): the fields KEDA requires, pointing at the indexer."""
    (scaled,) = find(rendered["prod"], "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert set(spec) <= {
        "scaleTargetRef", "pollingInterval", "cooldownPeriod", "minReplicaCount",
        "maxReplicaCount", "advanced", "triggers", "idleReplicaCount", "fallback",
    }  # fmt: skip
    assert spec["scaleTargetRef"] == {"name": "pulse-indexer"}
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    metadata = trigger["metadata"]
    assert {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} <= set(metadata)
    assert all(isinstance(v, str) for v in metadata.values()), "KEDA metadata values are strings"
    assert int(metadata["lagThreshold"]) > 0
    assert find(rendered["dev"], "ScaledObject") == []
