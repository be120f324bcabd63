"""Generate the Python stubs in libs/mcloud-proto from proto/, or check they are fresh.

Usage: python scripts/gen_proto.py [--check]
The output depends only on proto/ and the pinned grpcio-tools, so CI can regenerate and diff.
"""

from __future__ import annotations

import filecmp
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT / "libs" / "mcloud-proto" / "src"
PKG = OUT / "mcloud"


def generate(out: Path) -> None:
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{PROTO}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for d in [out / "mcloud", *(p for p in (out / "mcloud").rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()
    (out / "mcloud" / "py.typed").touch()


def _tree(path: Path) -> dict[str, Path]:
    return {str(p.relative_to(path)): p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def main() -> int:
    check = "--check" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_out = Path(tmp)
        generate(tmp_out)
        fresh = _tree(tmp_out / "mcloud")
        if check:
            current = _tree(PKG) if PKG.exists() else {}
            stale = sorted(
                name
                for name in set(fresh) | set(current)
                if name not in fresh or name not in current or not filecmp.cmp(fresh[name], current[name], False)
            )
            if stale:
                print("stale generated stubs (run `make proto`):", *stale, sep="\n  ")
                return 1
            print(f"stubs fresh ({len(fresh)} files)")
            return 0
        if PKG.exists():
            shutil.rmtree(PKG)
        shutil.copytree(tmp_out / "mcloud", PKG)
        print(f"generated {len(fresh)} files into {PKG.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
