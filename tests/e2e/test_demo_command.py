"""`mcloud demo` and `mcloud demo generate` as a newcomer runs them, as subprocesses against a stack started as
`mcloud up` starts it. The stack's clock-offset file is handed to the demo (the hidden test hook), so the
minute her shoe must sit in the cart passes at once."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from mcloud_cli.stack import OffsetClock, start_stack


@pytest.fixture(scope="module")
def clock(tmp_path_factory) -> OffsetClock:
    return OffsetClock(tmp_path_factory.mktemp("clock") / "offset")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, clock):
    with start_stack(tmp_path_factory.mktemp("demo") / "mcloud",
                     extra_args=["--clock-offset-file", str(clock.path)]) as handle:
        yield handle


def mcloud(stack, *args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mcloud_cli", *args, "--home", str(stack.home)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def test_mcloud_demo_plays_the_story(stack, clock):
    done = mcloud(stack, "demo", env={"MCLOUD_CLOCK_OFFSET_FILE": str(clock.path)})
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    for line in ("demo tenant", "SMTP sink on 127.0.0.1:", "best-send-time waits removed",
                 "recommendations switched to similar items and the marathon",
                 "merged into member", "email received: \"Welcome to Stride Club, Rachel: 10% off your first order\"",
                 "intent locked: recommendations switched to cross-category complements",
                 "tier: Normal -> Silver", "email received: \"You are Silver now, Rachel\"",
                 "in-app inbox: \"You are Silver now\"", "clerk sees Rachel", "POS order POS-",
                 "replayed by the storefront meanwhile, earned nothing", "8. What the marketer sees",
                 "Rachel's story played in",
                 # push channel, the push journeys and the other lifecycle journeys
                 "generic JSON HTTP provider (http_json)", "Store nearby invite (demo) published",
                 "Post-purchase thank-you (demo) published", "Repeat purchase (demo) published",
                 "Replenishment reminder (demo) published", "Coupon expiry reminder (demo) published",
                 "Win back dormant customers (demo) published", "Double-11 warm-up (demo) saved as a draft",
                 "not published: a once-only seasonal campaign",
                 "push received: \"Rachel, you are near Stride Jing'an\"",
                 "push received: \"Thanks for visiting Stride, Rachel\"",
                 "re-marketing: \"Repeat purchase (demo)\" entered for 2 orders"):
        assert line in out, f"{line!r} missing from:\n{out}"
    # a second run on the same stack: a new demo tenant, the same story
    again = mcloud(stack, "demo", env={"MCLOUD_CLOCK_OFFSET_FILE": str(clock.path)})
    assert again.returncode == 0, again.stdout + again.stderr


def test_mcloud_demo_generate_sends_behaviour(stack):
    done = mcloud(stack, "demo", "generate", "--customers", "40", "--days", "7", "--seed", "3")
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    for label in ("people", "signed up", "orders", "revenue", "ingest", "events/s", "in-app messages sent / opened"):
        assert label in out, out
    assert re.search(r"rejected by the gateway\W+0\b", out), out
    served, clicked = map(int, re.search(r"recommendation lists served / clicked\W+(\d+) / (\d+)", out).groups())
    assert 0 < clicked <= served, out


def test_mcloud_demo_generate_into_an_existing_tenant(stack, tmp_path):
    created = mcloud(stack, "tenant", "create", "shop-gen", "--json")
    assert created.returncode == 0, created.stderr
    tenant = tmp_path / "tenant.json"
    tenant.write_text(created.stdout)
    done = mcloud(stack, "demo", "generate", "--json", str(tenant), "--customers", "20", "--days", "3",
                  "--no-engagement")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the tenant had no catalogue: the demo catalogue was added" in done.stdout
    assert re.search(r"people\W+20\b", done.stdout), done.stdout
    assert re.search(r"rejected by the gateway\W+0\b", done.stdout), done.stdout


def test_mcloud_demo_without_a_stack_says_what_to_do(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mcloud_cli", "demo", "--home", str(tmp_path),
                           "--url", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "make up" in done.stderr
