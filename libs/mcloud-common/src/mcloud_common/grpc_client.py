"""gRPC client factory: default deadlines, retries on UNAVAILABLE (gRPC service config), tenant and
W3C trace context propagated in metadata."""

from __future__ import annotations

import json
from typing import NamedTuple

import grpc

from mcloud_common.grpc_server import TENANT_METADATA
from mcloud_common.telemetry import inject_traceparent

_RETRY_CONFIG = json.dumps({
    "methodConfig": [{
        "name": [{}],
        "retryPolicy": {
            "maxAttempts": 4,
            "initialBackoff": "0.05s",
            "maxBackoff": "1s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }]
})


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: grpc.aio.Metadata | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None


class _PropagatingInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, default_timeout: float) -> None:
        self._timeout = default_timeout

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        md = grpc.aio.Metadata(*(client_call_details.metadata or ()))
        traceparent, tracestate = inject_traceparent()
        if traceparent:
            md.add("traceparent", traceparent)
            if tracestate:
                md.add("tracestate", tracestate)
        details = _CallDetails(
            client_call_details.method,
            client_call_details.timeout if client_call_details.timeout is not None else self._timeout,
            md,
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


def make_channel(target: str, *, default_timeout: float = 5.0) -> grpc.aio.Channel:
    """An insecure channel to `target` (host:port) for in-cluster calls."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", _RETRY_CONFIG),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ],
        interceptors=[_PropagatingInterceptor(default_timeout)],
    )


def tenant_metadata(tenant_id: str) -> tuple[tuple[str, str], ...]:
    return ((TENANT_METADATA, tenant_id),)
