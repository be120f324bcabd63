"""Shared bench plumbing: percentiles, a stack to measure, a report file that keeps one section
per benchmark (REPORT.md), machine facts."""

from __future__ import annotations

import json
import os
import platform
import re
import time
from pathlib import Path

from mcloud_cli.stack import create_tenant  # noqa: F401 (the benches import it from here)

BENCH_DIR = Path(__file__).resolve().parent
# BENCH_OUT=dir sends the report and the raw figures elsewhere (`make bench-quick` does, so a smoke
# run never overwrites the real report)
OUT = Path(os.environ.get("BENCH_OUT") or BENCH_DIR).resolve()
REPORT = OUT / "REPORT.md"
RESULTS = OUT / "results"
# where a new section goes in REPORT.md: the summary first, the ceilings next, then the benches
SECTION_ORDER = ("summary", "ceilings", "ingest", "identity", "loyalty", "journey", "messaging", "recommend")


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


def write_section(name: str, markdown: str, data: dict, *, save: bool = True) -> None:
    """Replace this benchmark's section of REPORT.md and store its raw figures as JSON (with the
    time they were measured, `measured_at`, which the summary compares with the ceilings run's)."""
    if save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamped = {**data, "measured_at": data.get("measured_at") or time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                     time.gmtime())}
        (RESULTS / f"{name}.json").write_text(json.dumps(stamped, indent=2, default=str))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    text = REPORT.read_text() if REPORT.exists() else "# Benchmark report\n\nWritten by `make bench`.\n"
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = f"{begin}\n## {name}\n\n_{stamp}, {machine()}_\n\n{markdown.strip()}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = _insert(text, name, section)
    REPORT.write_text(text)


def _insert(text: str, name: str, section: str) -> str:
    """Put a new section before the first existing one that SECTION_ORDER places after it."""
    rank = SECTION_ORDER.index(name) if name in SECTION_ORDER else len(SECTION_ORDER)
    for later in SECTION_ORDER[rank + 1:]:
        marker = f"<!-- {later}:begin -->"
        if marker in text:
            at = text.index(marker)
            return text[:at] + section + "\n\n" + text[at:]
    return text.rstrip() + "\n\n" + section + "\n"
