#!/usr/bin/env sh
# Prints the path of a uv binary, installing uv from PyPI into .tools/ when none is on PATH.
# Works on a fresh Debian with only python3 and make (no pip, no venv module needed).
set -eu
UV_VERSION=0.13.9
if command -v uv >/dev/null 2>&1; then command -v uv; exit 0; fi
if [ -x .tools/bin/uv ]; then echo .tools/bin/uv; exit 0; fi
mkdir -p .tools
if python3 -m venv .tools/venv >/dev/null 2>&1 && .tools/venv/bin/python -m pip --version >/dev/null 2>&1; then
  .tools/venv/bin/python -m pip install -q "uv==$UV_VERSION" >&2
  mkdir -p .tools/bin && ln -sf ../venv/bin/uv .tools/bin/uv
elif python3 -m pip --version >/dev/null 2>&1; then
  python3 -m pip install -q --target .tools/pkgs "uv==$UV_VERSION" >&2
  mkdir -p .tools/bin && ln -sf ../pkgs/bin/uv .tools/bin/uv
else
  # No pip at all: fetch the uv wheel from PyPI with the standard library and unpack its binary.
  python3 - "$UV_VERSION" >&2 <<'PY'
import io, json, os, platform, sys, urllib.request, zipfile
version = sys.argv[1]
index = urllib.request.Request("https://pypi.org/simple/uv/",
                               headers={"Accept": "application/vnd.pypi.simple.v1+json"})
files = json.load(urllib.request.urlopen(index))["files"]
arch = {"x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}[platform.machine()]
url = next(f["url"] for f in files if f["filename"].startswith(f"uv-{version}-")
           and f["filename"].endswith(".whl") and "manylinux" in f["filename"] and arch in f["filename"])
wheel = zipfile.ZipFile(io.BytesIO(urllib.request.urlopen(url).read()))
name = next(n for n in wheel.namelist() if n.endswith("/scripts/uv"))
os.makedirs(".tools/bin", exist_ok=True)
with open(".tools/bin/uv", "wb") as f:
    f.write(wheel.read(name))
os.chmod(".tools/bin/uv", 0o755)
PY
fi
echo .tools/bin/uv
