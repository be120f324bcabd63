"""Helpers for the CLI tests: run `mcloud` as a real subprocess, know whether the real services exist."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

COMPONENT_MODULES = ("identity", "loyalty", "journey", "recommend", "messaging", "gateway")


def _has_main(module: str) -> bool:
    try:
        return importlib.util.find_spec(f"{module}.__main__") is not None
    except ModuleNotFoundError:
        return False


SERVICES_AVAILABLE = all(_has_main(m) for m in COMPONENT_MODULES)

needs_services = pytest.mark.skipif(
    not SERVICES_AVAILABLE,
    reason="needs `python -m <service>` for the five services and the gateway",
)


def mcloud(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """`mcloud ARGS` in a subprocess (as a user runs it), output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "mcloud_cli", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "mcloud"
