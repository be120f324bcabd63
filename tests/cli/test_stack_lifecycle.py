"""`mcloud up` with the real services, started the way the e2e tests start it (`start_stack`)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from mcloud_cli.config import SERVICES, StackPorts
from mcloud_cli.probes import wait_until
from mcloud_cli.servers import running_postgres, running_valkey
from mcloud_cli.stack import StackHandle, StackStartError, start_stack
from mcloud_cli.state import read_state

from .conftest import mcloud, needs_services

pytestmark = [needs_services, pytest.mark.timeout(600)]


def _gone(pids: list[int]) -> bool:
    return not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    with start_stack(tmp_path_factory.mktemp("stack") / "mcloud") as handle:
        yield handle


def test_up_prints_the_urls_and_every_component_is_healthy(stack: StackHandle) -> None:
    assert stack.gateway_url == f"http://127.0.0.1:{stack.ports.http}"
    assert stack.urls["docs"] == f"{stack.gateway_url}/docs"
    assert stack.grpc_address("messaging") == f"127.0.0.1:{stack.ports.grpc_base + 4}"
    assert stack.database_url("gateway").endswith("/mcloud_gateway")
    result = mcloud("status", "--json", "--home", str(stack.home))
    assert result.returncode == 0, result.stdout
    assert all(c["up"] for c in json.loads(result.stdout)["components"].values())


def test_state_json_records_the_up_process_and_its_children(stack: StackHandle) -> None:
    state = read_state(stack.home / "state.json")
    assert state is not None and state.phase == "up"
    assert state.up.pid == stack.process.pid
    assert set(state.children) == {*SERVICES, "gateway"}
    assert all(rec.alive() for rec in state.children.values())


def test_each_child_logs_to_its_own_file(stack: StackHandle) -> None:
    for name in (*SERVICES, "gateway"):
        assert (stack.home / "logs" / f"{name}.log").stat().st_size > 0


def test_tenant_create_prints_the_keys_once_and_refuses_a_duplicate_name(stack: StackHandle) -> None:
    created = mcloud("tenant", "create", "acme", "--json", "--home", str(stack.home))
    assert created.returncode == 0, created.stderr
    tenant = json.loads(created.stdout)
    assert set(tenant) == {"tenant_id", "write_key", "secret_key"}
    assert all(tenant.values())
    duplicate = mcloud("tenant", "create", "acme", "--json", "--home", str(stack.home))
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    assert duplicate.stdout == ""


def test_a_killed_service_is_restarted(stack: StackHandle) -> None:
    old = stack.kill("loyalty")
    stack.wait_healthy("loyalty", not_pid=old)
    assert "loyalty exited" in stack.output.read_text()


def test_a_killed_gateway_is_restarted(stack: StackHandle) -> None:
    old = stack.kill("gateway", signal.SIGTERM)
    stack.wait_healthy("gateway", not_pid=old)


def test_down_stops_everything_and_data_survives_the_next_up(tmp_path: Path) -> None:
    home, ports = tmp_path / "mcloud", StackPorts.free()
    first = start_stack(home, ports)
    try:
        assert mcloud("tenant", "create", "kept", "--home", str(home)).returncode == 0
        client = redis.Redis.from_url(first.urls["valkey"])
        client.set("mcloud-test:kept", "yes")
        client.close()
        pids = [rec.pid for rec in read_state(home / "state.json").children.values()]
    finally:
        result = mcloud("down", "--home", str(home))
    assert result.returncode == 0
    assert first.process.wait(timeout=60) == 0
    assert _gone(pids)
    assert running_postgres(home / "postgres") is None
    assert running_valkey(home / "valkey") is None
    assert not (home / "state.json").exists()
    assert mcloud("down", "--home", str(home)).stdout.strip() == "nothing was running"

    with start_stack(home, ports) as second:
        assert "initialising PostgreSQL" not in second.output.read_text().split("mcloud stopped")[-1]
        again = mcloud("tenant", "create", "kept", "--home", str(home))
        assert again.returncode == 1, "the tenant from the first run should still be there"
        client = redis.Redis.from_url(second.urls["valkey"])
        if os.environ.get("REDIS_URL") is None:  # AOF persistence of the embedded Valkey
            assert client.get("mcloud-test:kept") == b"yes"
        client.close()


def test_up_recovers_after_the_up_process_is_killed(tmp_path: Path) -> None:
    home, ports = tmp_path / "mcloud", StackPorts.free()
    first = start_stack(home, ports)
    pids = [rec.pid for rec in read_state(home / "state.json").children.values()]
    first.process.kill()
    first.process.wait()
    # children die with their parent; the embedded servers are daemons and stay for reuse
    assert wait_until(lambda: _gone(pids), timeout=30)
    second = start_stack(home, ports)
    try:
        assert "did not stop" in second.output.read_text()
        assert mcloud("status", "--home", str(home)).returncode == 0
    finally:
        assert second.stop() == 0, "Ctrl-C (SIGINT) should stop the stack cleanly"
    assert running_postgres(home / "postgres") is None


def test_a_failing_migration_stops_up_with_the_tail_of_its_output(tmp_path: Path) -> None:
    with pytest.raises(StackStartError) as failure:
        start_stack(tmp_path / "mcloud", env={"JOURNEY_LOG_LEVEL": "LOUD"}, timeout=180)
    message = str(failure.value)
    assert "python -m journey migrate" in message
    assert "JOURNEY_LOG_LEVEL" in message
    assert running_postgres(tmp_path / "mcloud" / "postgres") is None
    assert not (tmp_path / "mcloud" / "state.json").exists()
