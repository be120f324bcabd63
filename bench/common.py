"""Shared bench plumbing: percentiles, a stack to measure, a report file that keeps one section
per benchmark (REPORT.md), machine facts."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPORT = BENCH_DIR / "REPORT.md"
RESULTS = BENCH_DIR / "results"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def machine() -> str:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores {cpu}, Python {platform.python_version()}"


def create_tenant(home: Path, name: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "mcloud_cli", "tenant", "create", name, "--json", "--home", str(home)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def write_section(name: str, markdown: str, data: dict) -> None:
    """Replace this benchmark's section of REPORT.md and store its raw figures as JSON."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str))
    text = REPORT.read_text() if REPORT.exists() else "# Benchmark report\n\nWritten by `make bench`.\n"
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = f"{begin}\n## {name}\n\n_{stamp}, {machine()}_\n\n{markdown.strip()}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    REPORT.write_text(text)
