"""The gateway's Prometheus metrics: RED per route, recorded by the tracing middleware, served on a port of
their own (`GATEWAY_METRICS_PORT`, off when 0; bound to `GATEWAY_METRICS_HOST`, 127.0.0.1 by default),
never on the public API: the public app has no /metrics and nothing there can reach these numbers.

Labels are the route template (/v1/profiles/{identifier}), never the raw path: paths hold identifiers
such as emails, which are PII and would also explode the number of series."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from gateway.settings import GatewaySettings
from mcloud_common.metrics import LATENCY_BUCKETS, serve_metrics

HTTP_SECONDS = Histogram("mcloud_http_server_duration_seconds", "Time inside the gateway per request (first byte "
                         "in to response start), by method and route template", ["method", "route"],
                         buckets=LATENCY_BUCKETS)
HTTP_REQUESTS = Counter("mcloud_http_server_requests", "Requests answered, by method, route template and status "
                        "code (errors: status >= 500; 4xx are the client's)", ["method", "route", "status"])


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_SECONDS.labels(method, route).observe(seconds)
    HTTP_REQUESTS.labels(method, route, str(status)).inc()


def serve(settings: GatewaySettings) -> None:
    """Start the scrape endpoint when `metrics_port` is set (a daemon thread of this process)."""
    if settings.metrics_port:
        serve_metrics(settings.metrics_port, settings.metrics_host)
