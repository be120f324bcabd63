"""The Dockerfiles (one per service and the gateway; build context = the repository root): hadolint-clean,
and consistent with the uv workspace and the k8s manifests (package, module, ports, copied paths)."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# directory -> (python module run by `python -m`, ports the k8s manifests use)
IMAGES = {
    "gateway": ("gateway", {8080, 9090}),
    "identity-svc": ("identity", {50051, 9090}),
    "loyalty-svc": ("loyalty", {50052, 9090}),
    "journey-svc": ("journey", {50053, 9090}),
    "recommend-svc": ("recommend", {50054, 9090}),
    "messaging-svc": ("messaging", {50055, 9090}),
}
# hadolint rules ignored, each with its reason (none today)
HADOLINT_IGNORED: dict[str, str] = {}


def workspace_members() -> list[str]:
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    members = []
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        members += sorted(str(p.parent.relative_to(REPO)) for p in REPO.glob(f"{pattern}/pyproject.toml"))
    return members


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            result.append((op.upper(), rest.strip()))
    return result


def dockerignored(path: str) -> bool:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(prefix, pat) or fnmatch.fnmatch(prefix, pat.removeprefix("**/"))
               or fnmatch.fnmatch(parts[i - 1], pat.removeprefix("**/"))
               for pat in patterns for i, prefix in enumerate(prefixes, 1))


def test_every_image_has_a_dockerfile():
    assert sorted(p.parent.name for p in REPO.glob("*/Dockerfile")) == sorted(IMAGES)


def test_hadolint_passes():
    args = [str(BIN / "hadolint"), "--failure-threshold", "warning"]
    for rule in HADOLINT_IGNORED:
        args += ["--ignore", rule]
    out = subprocess.run([*args, *(str(REPO / d / "Dockerfile") for d in IMAGES)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("directory", sorted(IMAGES))
def test_dockerfile_matches_the_workspace(directory):
    module, ports = IMAGES[directory]
    project = tomllib.loads((REPO / directory / "pyproject.toml").read_text())
    package = project["project"]["name"]
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [f"src/{module}"]
    steps = instructions(REPO / directory / "Dockerfile")
    runs = [args for op, args in steps if op == "RUN"]
    syncs = [r for r in runs if r.startswith("uv sync")]
    assert len(syncs) == 2 and all("--frozen" in s and "--no-dev" in s and f"--package {package}" in s
                                   for s in syncs), syncs
    assert "--no-install-workspace" in syncs[0] and "--no-editable" in syncs[1]
    ensure_uv = (REPO / "scripts" / "ensure-uv.sh").read_text()
    uv_version = re.search(r"^UV_VERSION=(\S+)$", ensure_uv, re.M).group(1)
    assert ("ARG", f"UV_VERSION={uv_version}") in steps, "uv pinned as scripts/ensure-uv.sh pins it"

    copies = [args.split() for op, args in steps if op == "COPY" and not args.startswith("--from")]
    sources = [src for args in copies for src in args[:-1]]
    for src in sources:
        assert (REPO / src).exists(), f"{directory}/Dockerfile copies missing {src}"
        assert not dockerignored(src), f"{src} is excluded by .dockerignore"
    members = workspace_members()
    assert {f"{m}/pyproject.toml" for m in members} <= set(sources), "uv needs every member's pyproject.toml"
    needed = {"libs/mcloud-proto/", "libs/mcloud-common/", f"{directory}/"}
    assert needed <= set(sources)
    deps = {d.split(">")[0].split("=")[0].split("[")[0] for d in project["project"]["dependencies"]}
    assert deps & {"mcloud-cli", "mcloud-gateway"} == set(), "a service never depends on another component"

    froms = [args for op, args in steps if op == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS builder"), "multi-stage: builder + runtime"
    base = next(args for op, args in steps if op == "ARG" and args.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+", base), base
    user = [args for op, args in steps if op == "USER"]
    assert user == ["10001:10001"], "the runtime stage runs as the numeric non-root user the pods expect"
    assert ("ENTRYPOINT", f'["python", "-m", "{module}"]') in steps
    assert ("CMD", '["serve"]') in steps
    exposed = {int(p) for op, args in steps if op == "EXPOSE" for p in args.split()}
    assert exposed == ports
    text = (REPO / directory / "Dockerfile").read_text()
    assert not re.search(r"(?i)(password|secret|token)\s*=", text), "no secrets in images"
    assert f"-t mcloud/{module}:" in text, "the build command in the header names the image k8s/ uses"


def test_dockerignore_keeps_the_build_context_small():
    for path in (".git", ".venv", "identity-svc/tests", "libs/mcloud-common/tests", "k8s", "bench",
                 "gateway/src/gateway/__pycache__"):
        assert dockerignored(path), path
    for path in ("uv.lock", "pyproject.toml", "libs/mcloud-common/src/mcloud_common/testing",
                 "gateway/src/gateway/migrations", "identity-svc/src/identity/migrations"):
        assert not dockerignored(path), path
