"""Dependency checks behind /readyz: the gateway database, Valkey, and every service's gRPC health."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.resources import Resources


async def _database(resources: Resources, deadline: float) -> str:
    async with asyncio.timeout(deadline):
        await resources.pool.fetchval("SELECT 1")
    return "ok"


async def _valkey(resources: Resources, deadline: float) -> str:
    async with asyncio.timeout(deadline):
        await resources.redis.ping()
    return "ok"


async def _service(channel: grpc.aio.Channel, deadline: float) -> str:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=deadline)
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status).lower()
    return "ok"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"down: {exc.code().name.lower()}"
    if isinstance(exc, TimeoutError):
        return "down: timeout"
    return f"down: {type(exc).__name__}"


async def check_all(resources: Resources) -> dict[str, str]:
    """dependency -> 'ok' or why it is not; all checks run concurrently, each with its own deadline."""
    timeout = resources.settings.readiness_timeout_seconds
    checks = {"database": _database(resources, timeout), "valkey": _valkey(resources, timeout)}
    for name, channel in resources.channels.items():
        checks[name] = _service(channel, timeout)
    results = await asyncio.gather(*checks.values(), return_exceptions=True)
    return {name: r if isinstance(r, str) else _reason(r) for name, r in zip(checks, results, strict=True)}
