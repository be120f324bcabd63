"""A server span per HTTP request (W3C traceparent honoured), so the gRPC client interceptor carries
the trace on to the services and logs get trace ids; and the request's RED metrics (gateway.metrics).
Pure ASGI, one middleware for both: no per-request task overhead.

Spans (and logs) carry the route template, never the raw path: paths hold identifiers such as
/v1/profiles/email:rachel@example.com, which are PII."""

from __future__ import annotations

import time

from opentelemetry import context as otel_context
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import observe_request
from mcloud_common.telemetry import extract_context

_UNTRACED = frozenset({"/healthz", "/readyz"})
UNMATCHED_ROUTE = "<unmatched>"


def route_template(scope: Scope) -> str:
    """The matched route's path template (e.g. /v1/profiles/{identifier}), or "<unmatched>" when
    routing found nothing (or has not run yet). Safe to log and trace: it holds no request data."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED_ROUTE


class TracingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tracer = trace.get_tracer("mcloud.gateway")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNTRACED:
            await self.app(scope, receive, send)
            return
        traceparent = tracestate = ""
        for name, value in scope["headers"]:
            if name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"tracestate":
                tracestate = value.decode("latin-1")
        parent = extract_context(traceparent, tracestate) if traceparent else otel_context.get_current()
        method = scope["method"]
        # the route is only known after routing; named and attributed with it when the request ends
        span = self.tracer.start_span(
            method,
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method},
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        started = time.perf_counter()
        outcome = [500, 0.0]  # status, seconds to the response start (a request that raises counts as 500)

        async def traced_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = outcome[0] = message["status"]
                outcome[1] = time.perf_counter() - started
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(trace.Status(trace.StatusCode.ERROR))
            await send(message)

        try:
            await self.app(scope, receive, traced_send)
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR))
            raise
        finally:
            template = route_template(scope)
            observe_request(method, template, outcome[0], outcome[1] or time.perf_counter() - started)
            span.set_attribute("http.route", template)
            span.update_name(f"{method} {template}")
            otel_context.detach(token)
            span.end()
