"""gRPC client factory: default deadlines, retries on UNAVAILABLE (gRPC service config), tenant and
W3C trace context propagated in metadata; a CLIENT span per call while this process exports traces."""

from __future__ import annotations

import json
from typing import NamedTuple

import grpc
from opentelemetry import trace

from mcloud_common import telemetry
from mcloud_common.grpc_server import TENANT_METADATA
from mcloud_common.telemetry import inject_traceparent

# round_robin: with a target that resolves to several addresses (`dns:///recommend:50054` on a headless
# Kubernetes Service) calls spread over every replica; with one address it behaves as pick_first
_RETRY_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
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
        self._tracer = trace.get_tracer("mcloud.grpc.client")

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        if not telemetry.exporting():  # the hot path without a collector: propagate the current context only
            return await continuation(self._details(client_call_details, None), request)
        method = client_call_details.method
        method = method.decode() if isinstance(method, bytes) else method
        span = self._tracer.start_span(method, kind=trace.SpanKind.CLIENT,
                                       attributes={"rpc.system": "grpc", "rpc.method": method})
        try:
            call = await continuation(self._details(client_call_details, trace.set_span_in_context(span)), request)
            code = await call.code()  # waits for the call to finish; the caller then reads the same outcome
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code != grpc.StatusCode.OK:
                span.set_status(trace.Status(trace.StatusCode.ERROR, code.name))
            return call
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR))
            raise
        finally:
            span.end()

    def _details(self, client_call_details, context) -> _CallDetails:
        md = grpc.aio.Metadata(*(client_call_details.metadata or ()))
        traceparent, tracestate = inject_traceparent(context)
        if traceparent:
            md.add("traceparent", traceparent)
            if tracestate:
                md.add("tracestate", tracestate)
        return _CallDetails(
            client_call_details.method,
            client_call_details.timeout if client_call_details.timeout is not None else self._timeout,
            md,
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )


def make_channel(target: str, *, default_timeout: float = 5.0) -> grpc.aio.Channel:
    """An insecure channel to `target` (host:port) for in-cluster calls."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", _RETRY_CONFIG),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            # a restarted service is reached again within a second or two, not after gRPC's default
            # exponential reconnect backoff (up to 120 s) has run its course
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1_000),
        ],
        interceptors=[_PropagatingInterceptor(default_timeout)],
    )


def tenant_metadata(tenant_id: str) -> tuple[tuple[str, str], ...]:
    return ((TENANT_METADATA, tenant_id),)
