"""Prometheus metrics every service shares (prometheus-client): RED per RPC, recorded by the gRPC server's
interceptor; sampled gauges (bus consumer lag, outbox backlog, and services' own: journey timer lag,
messaging send-queue depth); and a scrape endpoint (`<SVC>_METRICS_PORT`, off when 0) started by
`service_main`.

Gauges that need a query are never computed per scrape: a background job of the service samples them
every `<SVC>_METRICS_SAMPLE_SECONDS` (only while the endpoint is on) and a scrape reads the last values.

The latency buckets are fine below 25 ms, where the services' targets are (recommendations p99 well under
10 ms inside the service), so a percentile read from them is exact to about half a millisecond there."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.010,
                   0.0125, 0.015, 0.0175, 0.020, 0.025, 0.030, 0.040, 0.050, 0.075, 0.100, 0.150, 0.250, 0.500, 1.0,
                   2.5, 5.0, 10.0)

RPC_SECONDS = Histogram("mcloud_rpc_server_duration_seconds", "Time inside the service per RPC (handler start "
                        "to response), by method and status code", ["method", "code"], buckets=LATENCY_BUCKETS)
RPC_ERRORS = Counter("mcloud_rpc_server_errors", "RPCs answered with a status other than OK, by method and code",
                     ["method", "code"])


# sampled gauges -------------------------------------------------------------------------------------------
CONSUMER_LAG = Gauge("mcloud_bus_consumer_lag", "Entries of a stream its consumer group has not finished with: "
                     "not yet delivered plus delivered but not acknowledged (sampled)", ["group", "stream"])
OUTBOX_BACKLOG = Gauge("mcloud_outbox_backlog", "Outbox rows not yet relayed to the bus (sampled)")
OUTBOX_OLDEST_SECONDS = Gauge("mcloud_outbox_oldest_seconds", "Age of the oldest outbox row not yet relayed, 0 "
                              "when the outbox is empty (sampled)")
SAMPLE_FAILURES = Counter("mcloud_metrics_sample_failures", "Gauge sampling runs that failed, by job", ["job"])


def observe_rpc(method: str, code: str, seconds: float) -> None:
    RPC_SECONDS.labels(method, code).observe(seconds)
    if code != "OK":
        RPC_ERRORS.labels(method, code).inc()


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose this process's metrics at http://host:port/metrics (a daemon thread)."""
    start_http_server(port, addr=host, registry=REGISTRY)


def histogram_buckets(text: str, name: str, labels: Mapping[str, str]) -> list[tuple[float, float]]:
    """The cumulative (upper bound, count) buckets of one labelled histogram in a Prometheus text
    exposition; summed over the series that carry `labels` (e.g. every status code of a method)."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for s in family.samples:
            if s.name != f"{name}_bucket" or any(s.labels.get(k) != v for k, v in labels.items()):
                continue
            le = float(s.labels["le"])
            totals[le] = totals.get(le, 0.0) + s.value
    return sorted(totals.items())


def bucket_percentile(before: Iterable[tuple[float, float]], after: Iterable[tuple[float, float]], q: float
                      ) -> float | None:
    """The q-th percentile (0..100) of what was observed between two scrapes, as the upper bound of the
    bucket it falls in (None when nothing was observed)."""
    start = dict(before)
    delta = [(le, count - start.get(le, 0.0)) for le, count in after]
    if not delta or delta[-1][1] <= 0:
        return None
    rank = q / 100 * delta[-1][1]
    counts = [c for _, c in delta]
    return delta[min(bisect.bisect_left(counts, rank), len(delta) - 1)][0]
