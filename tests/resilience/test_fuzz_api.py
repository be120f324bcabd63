"""Malformed input against the whole public API: schemathesis generates requests from the gateway's OpenAPI
spec (valid and invalid ones: wrong types, out-of-range numbers, odd strings, missing fields) for every
operation, with a secret key that gets past authentication, and no answer may be a 5xx other than the
documented 503/504 of a dependency.

It runs schemathesis's CLI against the stack as a client would (the spec is served by the running gateway),
bounded per operation and in total (40 s). Reproduce a failure with the printed curl
command, or run the same command by hand against `mcloud up`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MAX_EXAMPLES = 5  # per operation and phase (~140 operations)
MAX_SECONDS = 40  # and the whole run bounded: the coverage phase alone can make thousands of cases

pytestmark = pytest.mark.timeout(240)


def test_no_operation_answers_a_server_error(stack, new_tenant, tmp_path: Path):
    tenant = new_tenant("fuzz")
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    result = subprocess.run(
        [st, "run", f"{stack.gateway_url}/openapi.json",
         "--checks", "not_a_server_error",
         "--phases", "examples,coverage,fuzzing",
         "--max-examples", str(MAX_EXAMPLES),
         "--max-time", str(MAX_SECONDS),
         "--workers", "2",
         "--seed", "20261207",  # the same cases every run: a failure here is reproducible, never flaky
         "--generation-database", "none",
         "--request-timeout", "20",
         "--header", f"Authorization: Bearer {tenant['secret_key']}",
         "--no-color", "--warnings", "off"],
        capture_output=True, text=True, timeout=220, cwd=tmp_path,
    )
    out = result.stdout
    start = out.find("FAILURES")
    report = (out[start:start + 15000] if start >= 0 else out[-15000:]) + result.stderr[-3000:]
    assert "\nFailures:" not in out, report  # ST101 (a 5xx) or any other failed check
    if result.returncode != 0:
        # Errors of the tool itself, not of the API: with two workers, CPython 3.11's parser can trip over
        # its recursion counter while hypothesis compiles code in both threads at once ("AST constructor
        # recursion depth mismatch"). Any other error fails the test.
        errors = int(m.group(1)) if (m := re.search(r"Runtime Error: (\d+)", out)) else 0
        assert errors and out.count("AST constructor recursion depth mismatch") >= errors, report
