"""Is it up? One probe per kind of component: TCP for the servers, the standard gRPC health service
for our services, HTTP for the gateway."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc


def tcp_ok(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def grpc_serving(address: str, timeout: float = 1.0) -> bool:
    """grpc.health.v1 Check(service="") answers SERVING."""
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
            return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.1,
    abort: Callable[[], bool] = lambda: False,
) -> bool:
    """Poll `condition` until it holds (True), the deadline passes or `abort()` says stop (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if abort() or time.monotonic() >= deadline:
            return False
        time.sleep(interval)
