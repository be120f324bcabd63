"""Helpers for tests that run a real service in-process on a free port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc

from mcloud_common.grpc_client import make_channel, tenant_metadata
from mcloud_common.grpc_server import GrpcService


@asynccontextmanager
async def running_service(build: Callable[..., Awaitable[GrpcService]], settings: Any, **kwargs: Any
                          ) -> AsyncIterator[tuple[GrpcService, grpc.aio.Channel]]:
    """Build and start a service (settings must say grpc_port=0), yield it with a client channel."""
    service = await build(settings, **kwargs)
    await service.start()
    channel = make_channel(f"127.0.0.1:{service.port}")
    try:
        yield service, channel
    finally:
        await channel.close()
        await service.stop()


async def wait_until(predicate: Callable[[], Awaitable[Any] | Any], *, timeout: float = 10.0,  # noqa: ASYNC109
                     interval: float = 0.02, message: str = "condition") -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


class TenantApi:
    """Calls a running service as one tenant: `await api.call("Method", request)`."""

    def __init__(self, stub, tenant: str) -> None:
        self.stub = stub
        self.tenant = tenant
        self.md = tenant_metadata(tenant)

    async def call(self, method: str, request):
        return await getattr(self.stub, method)(request, metadata=self.md)
