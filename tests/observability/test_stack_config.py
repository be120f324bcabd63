"""`mcloud up` gives every process a Prometheus port of its own (gRPC port + 1000; the gateway next to
the services'), checks it is free before starting, and lists the /metrics URLs."""

from __future__ import annotations

from pathlib import Path

from mcloud_cli.config import GATEWAY, SERVICES, StackConfig, StackPorts, port_free


def test_every_process_gets_its_own_metrics_port_next_to_the_grpc_ports(monkeypatch):
    for c in (*SERVICES, GATEWAY):
        monkeypatch.delenv(f"{c.upper()}_METRICS_PORT", raising=False)
    config = StackConfig(Path("/tmp/unused"), StackPorts(grpc_base=40000))
    ports = {c: int(config.child_env(c)[f"{c.upper()}_METRICS_PORT"]) for c in (*SERVICES, GATEWAY)}
    assert ports == {"identity": 41000, "loyalty": 41001, "journey": 41002, "recommend": 41003, "messaging": 41004,
                     "gateway": 41005}
    assert config.urls()["metrics"]["gateway"] == "http://127.0.0.1:41005/metrics"
    assert set(ports.values()) <= set(config.ports_to_check().values())


def test_a_metrics_port_set_in_the_environment_wins_and_zero_turns_it_off(monkeypatch):
    monkeypatch.setenv("RECOMMEND_METRICS_PORT", "19999")
    monkeypatch.setenv("JOURNEY_METRICS_PORT", "0")
    config = StackConfig(Path("/tmp/unused"), StackPorts(grpc_base=40000))
    assert config.child_env("recommend")["RECOMMEND_METRICS_PORT"] == "19999"
    assert config.urls()["metrics"]["recommend"] == "http://127.0.0.1:19999/metrics"
    assert "journey" not in config.urls()["metrics"]


def test_free_ports_leave_the_metrics_ports_free_too():
    ports = StackPorts.free()
    assert all(port_free(ports.metrics(c)) for c in (*SERVICES, GATEWAY))
