"""CLI behaviour that needs no running services: help, refusals, state.json handling, down/status
when nothing runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from mcloud_cli.config import SERVICES, StackConfig, StackPorts, port_free
from mcloud_cli.state import ProcessRecord, StackState, read_state, write_state

from .conftest import mcloud


def _state(home: Path, ports: StackPorts, up: ProcessRecord, children: dict | None = None) -> StackState:
    config = StackConfig(home=home.resolve(), ports=ports)
    return StackState(up=up, phase="up", ports={}, urls=config.urls(), embedded_postgres=True,
                      embedded_valkey=True, children=children or {})


def _dead_process() -> ProcessRecord:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return ProcessRecord(proc.pid, time.time() - 3600)


def test_help_lists_every_command() -> None:
    result = mcloud("--help")
    assert result.returncode == 0
    for command in ("up", "down", "status", "tenant"):
        assert command in result.stdout
    assert "create" in mcloud("tenant", "--help").stdout


def test_free_ports_leave_room_for_five_services() -> None:
    ports = StackPorts.free()
    assert all(port_free(ports.grpc(s)) for s in SERVICES)
    assert len({ports.http, ports.pg, ports.valkey, *(ports.grpc(s) for s in SERVICES)}) == 8


def test_up_refuses_a_busy_port_before_starting_anything(home: Path) -> None:
    ports = StackPorts.free()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports.http))
        busy.listen()
        result = mcloud("up", "--json", "--home", str(home), "--http-port", str(ports.http),
                        "--grpc-base-port", str(ports.grpc_base), "--pg-port", str(ports.pg),
                        "--valkey-port", str(ports.valkey), env={"DATABASE_URL": "", "REDIS_URL": ""})
    assert result.returncode == 1
    assert "ports already in use" in result.stderr
    assert f"gateway: 127.0.0.1:{ports.http}" in result.stderr
    assert result.stdout == ""
    assert not (home / "postgres").exists()
    assert not (home / "state.json").exists()


def test_up_refuses_to_start_beside_a_live_stack_and_keeps_its_state(home: Path) -> None:
    ports = StackPorts.free()
    write_state(home / "state.json", _state(home, ports, ProcessRecord.of(os.getpid())))
    result = mcloud("up", "--home", str(home), "--http-port", str(ports.http),
                    "--grpc-base-port", str(ports.grpc_base), "--pg-port", str(ports.pg),
                    "--valkey-port", str(ports.valkey))
    assert result.returncode == 1
    assert "already running" in result.stderr
    assert read_state(home / "state.json") is not None


def test_status_probes_the_recorded_addresses_and_exits_1_when_down(home: Path) -> None:
    ports = StackPorts.free()
    write_state(home / "state.json", _state(home, ports, _dead_process()))
    result = mcloud("status", "--json", "--home", str(home))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["up"] is False
    assert set(report["components"]) == {"postgres", "valkey", *SERVICES, "gateway"}
    assert report["components"]["identity"] == {"address": f"127.0.0.1:{ports.grpc_base}", "up": False}
    assert report["components"]["gateway"]["address"] == f"http://127.0.0.1:{ports.http}"


def test_status_reports_a_listening_server_as_up(home: Path) -> None:
    ports = StackPorts.free()
    write_state(home / "state.json", _state(home, ports, _dead_process()))
    with socket.socket() as pg:
        pg.bind(("127.0.0.1", ports.pg))
        pg.listen()
        report = json.loads(mcloud("status", "--json", "--home", str(home)).stdout)
    assert report["components"]["postgres"]["up"] is True
    assert report["components"]["valkey"]["up"] is False


def test_down_with_nothing_running_exits_0(home: Path) -> None:
    result = mcloud("down", "--home", str(home))
    assert result.returncode == 0
    assert "nothing was running" in result.stdout


def test_down_after_a_crash_stops_recorded_children_and_removes_stale_state(home: Path) -> None:
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    try:
        record = ProcessRecord.of(orphan.pid)
        state = _state(home, StackPorts.free(), _dead_process(), {"identity": record})
        write_state(home / "state.json", state)
        result = mcloud("down", "--home", str(home))
        assert result.returncode == 0
        assert orphan.wait(timeout=15) == -signal.SIGTERM
        assert "identity" in result.stdout
        assert not (home / "state.json").exists()
    finally:
        orphan.kill()
        orphan.wait()


def test_a_recycled_pid_is_not_mistaken_for_a_recorded_process() -> None:
    record = ProcessRecord(os.getpid(), ProcessRecord.of(os.getpid()).create_time - 100)
    assert not record.alive()
    assert ProcessRecord.of(os.getpid()).alive()


def test_unreadable_state_is_treated_as_absent(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "state.json").write_text("{not json")
    assert read_state(home / "state.json") is None
    assert mcloud("down", "--home", str(home)).returncode == 0


def test_tenant_create_without_a_stack_or_database_url_fails_clearly(home: Path) -> None:
    result = mcloud("tenant", "create", "acme", "--json", "--home", str(home),
                    env={"DATABASE_URL": "", "GATEWAY_DATABASE_URL": ""})
    assert result.returncode == 1
    assert "no stack found" in result.stderr
    assert result.stdout == ""
