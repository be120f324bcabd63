"""Rendered k8s/ overlays (kubectl kustomize, no cluster needed), shared by the manifest tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("dev", "prod")
BIN = Path(sys.executable).parent


def render(overlay: str) -> list[dict]:
    """The objects `kubectl kustomize k8s/overlays/<overlay>` renders."""
    out = subprocess.run([str(BIN / "kubectl"), "kustomize", str(K8S / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not out.stderr.strip(), f"kustomize warns: {out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


_cache: dict[str, list[dict]] = {}


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> str:
    return request.param


@pytest.fixture
def objects(overlay: str) -> list[dict]:
    if overlay not in _cache:
        _cache[overlay] = render(overlay)
    return _cache[overlay]
