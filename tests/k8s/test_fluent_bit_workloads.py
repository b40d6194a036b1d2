"""The Fluent Bit DaemonSet and edge Deployment as rendered: they load exactly the configs of
ingest/fluent-bit/, give them every variable and path they use, and leave them time and disk
to keep their delivery promise."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import yaml

from tests.ingest.test_fluent_bit_config import CONFIG_DIR, _size_bytes
from tests.k8s.manifests import Manifest, containers, find, one, pod_template

WORKLOADS = {
    ("DaemonSet", "pulse-fluent-bit-node"): "node-tail.yaml",
    ("Deployment", "pulse-fluent-bit-edge"): "edge-http.yaml",
}
QUANTITY = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def _quantity_bytes(text: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", text)
    assert match, text
    return int(match[1]) * QUANTITY.get(match[2] or "", 1)


def _mounted_config(docs: list[Manifest], template: Manifest) -> tuple[str, dict[str, str]]:
    """(path given to `-c`, data of the ConfigMap mounted at that path's directory)."""
    (c,) = containers(template)
    assert c["command"] == ["/fluent-bit/bin/fluent-bit"]
    config_path = PurePosixPath(c["args"][c["args"].index("-c") + 1])
    (mount,) = [m for m in c["volumeMounts"] if PurePosixPath(m["mountPath"]) == config_path.parent]
    volume = {v["name"]: v for v in template["spec"]["volumes"]}[mount["name"]]
    config_map = one(docs, "ConfigMap", volume["configMap"]["name"])
    return config_path.name, config_map["data"]


def _mounts(template: Manifest) -> dict[str, Manifest]:
    """mountPath -> volume."""
    (c,) = containers(template)
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"]}


def _volume_for(template: Manifest, path: str) -> Manifest:
    for mount_path, volume in _mounts(template).items():
        if PurePosixPath(path).is_relative_to(mount_path):
            return volume
    raise AssertionError(f"{path} is on the read-only root filesystem")


def test_each_runs_the_config_from_ingest(docs: list[Manifest]) -> None:
    for (kind, name), source in WORKLOADS.items():
        key, data = _mounted_config(docs, pod_template(one(docs, kind, name)))
        assert data[key] == (CONFIG_DIR / source).read_text(), name


def test_every_variable_of_the_config_is_set(docs: list[Manifest]) -> None:
    for (kind, name), source in WORKLOADS.items():
        variables = set(re.findall(r"\$\{(\w+)\}", (CONFIG_DIR / source).read_text()))
        (c,) = containers(pod_template(one(docs, kind, name)))
        assert variables <= {e["name"] for e in c.get("env", [])}, name


def test_grace_period_covers_flush_and_kafka_drain(docs: list[Manifest]) -> None:
    for (kind, name), source in WORKLOADS.items():
        grace = int(yaml.safe_load((CONFIG_DIR / source).read_text())["service"]["grace"])
        template = pod_template(one(docs, kind, name))
        (c,) = containers(template)
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        # SIGTERM: `grace` s to flush chunks, then up to `grace` s for librdkafka's flush.
        assert template["spec"]["terminationGracePeriodSeconds"] >= pre_stop + 2 * grace + 5


def test_node_state_and_logs_live_on_the_host(docs: list[Manifest]) -> None:
    config = yaml.safe_load((CONFIG_DIR / "node-tail.yaml").read_text())
    (tail,) = config["pipeline"]["inputs"]
    template = pod_template(one(docs, "DaemonSet", "pulse-fluent-bit-node"))
    for path in (config["service"]["storage.path"], tail["db"]):
        assert "hostPath" in _volume_for(template, path), path
    logs = tail["path"].split("*")[0]
    assert "hostPath" in _volume_for(template, logs)
    assert any(t.get("operator") == "Exists" for t in template["spec"]["tolerations"])


def test_edge_buffer_fits_its_volume(docs: list[Manifest]) -> None:
    config = yaml.safe_load((CONFIG_DIR / "edge-http.yaml").read_text())
    (out,) = config["pipeline"]["outputs"]
    template = pod_template(one(docs, "Deployment", "pulse-fluent-bit-edge"))
    volume = _volume_for(template, config["service"]["storage.path"])
    size_limit = _quantity_bytes(volume["emptyDir"]["sizeLimit"])
    assert size_limit > _size_bytes(out["storage.total_limit_size"])
    (c,) = containers(template)
    assert _quantity_bytes(c["resources"]["limits"]["ephemeral-storage"]) >= size_limit


def test_edge_service_reaches_in_http(docs: list[Manifest]) -> None:
    config = yaml.safe_load((CONFIG_DIR / "edge-http.yaml").read_text())
    (http,) = config["pipeline"]["inputs"]
    (c,) = containers(pod_template(one(docs, "Deployment", "pulse-fluent-bit-edge")))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == int(http["port"])
    assert ports["metrics"] == int(config["service"]["http_port"])
    service = one(docs, "Service", "pulse-edge")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert find(docs, "HorizontalPodAutoscaler", "pulse-fluent-bit-edge")
