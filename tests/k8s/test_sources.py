"""The files under k8s/: every manifest parses, every kustomize reference resolves, nothing
is left unused, and each overlay builds with the pinned kustomize."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.k8s.manifests import (
    K8S,
    OVERLAYS,
    Manifest,
    kustomization_dirs,
    load_docs,
    references,
    yaml_files,
)


def _generator_inputs() -> set[Path]:
    """Files read by configMapGenerator (Fluent Bit configs, env files): not manifests."""
    inputs: set[Path] = set()
    for kdir in kustomization_dirs():
        k = load_docs(kdir / "kustomization.yaml")[0]
        for generator in k.get("configMapGenerator", []):
            inputs |= {(kdir / f.split("=", 1)[-1]).resolve() for f in generator.get("files", [])}
            inputs |= {(kdir / f).resolve() for f in generator.get("envs", [])}
    return inputs


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_parses(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} is empty"
    if path.resolve() in _generator_inputs():
        return
    for doc in docs:
        assert isinstance(doc, dict), path
        assert doc.get("apiVersion") and doc.get("kind"), f"{path}: apiVersion and kind"
        if doc["kind"] not in {"Kustomization", "Component"}:
            assert doc.get("metadata", {}).get("name"), f"{path}: metadata.name"


@pytest.mark.parametrize("kdir", kustomization_dirs(), ids=lambda p: str(p.relative_to(K8S)))
def test_kustomization_references_resolve(kdir: Path) -> None:
    k = load_docs(kdir / "kustomization.yaml")[0]
    for ref in references(kdir):
        assert ref.exists(), f"{kdir}/kustomization.yaml names {ref}, which does not exist"
        if ref.is_dir():
            kind = load_docs(ref / "kustomization.yaml")[0]["kind"]
            listed_as = "components" if kind == "Component" else "resources"
            assert any((kdir / n).resolve() == ref for n in k.get(listed_as, [])), (
                f"{ref} is a {kind}: list it under {listed_as}"
            )
        else:
            assert load_docs(ref), f"{ref} is empty"


def test_no_file_is_left_unused() -> None:
    used = {ref for kdir in kustomization_dirs() for ref in references(kdir)}
    for path in yaml_files():
        if path.name == "kustomization.yaml":
            assert path.parent in used or path.parent.parent.name == "overlays", path
        else:
            assert path.resolve() in used, f"{path} is not referenced by any kustomization"


def test_overlays_exist() -> None:
    for overlay in OVERLAYS:
        assert (K8S / "overlays" / overlay / "kustomization.yaml").exists()


def test_overlays_build(rendered: dict[str, list[Manifest]]) -> None:
    for overlay, docs in rendered.items():
        kinds = {d["kind"] for d in docs}
        assert {"Deployment", "DaemonSet", "CronJob", "Kafka", "OpenSearchCluster"} <= kinds, (
            overlay
        )
        names = [(d["kind"], d["metadata"]["name"]) for d in docs]
        assert len(names) == len(set(names)), f"{overlay}: duplicate objects"
        for doc in docs:
            if doc["kind"] != "Namespace":
                assert doc["metadata"].get("namespace") == "pulse", doc["metadata"]["name"]
