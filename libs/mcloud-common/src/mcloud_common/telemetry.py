"""OpenTelemetry set-up, one call per process (`configure_tracing`): a tracer provider always, so trace
ids exist for logs and travel with gRPC calls and events; spans are recorded and exported only when
an exporter is configured (an OTLP endpoint), silent and nearly free otherwise.

Exporting (OTLP endpoint set):
- every span is recorded (parent-based: an upstream decision not to sample is respected), or a
  fraction of new traces with OTEL_TRACES_SAMPLER_ARG (e.g. 0.1);
- SQL (asyncpg) and Redis calls become client spans, but only inside a trace: a root span of kind
  CLIENT (a relay poll, a consumer's XREADGROUP, a timer query) is dropped, so background polling
  does not flood the collector;
- the gRPC client interceptor opens a CLIENT span per call.

Not exporting (the default in `mcloud up`, tests and benchmarks): nothing is instrumented and every
span is a non-recording one (ALWAYS_OFF sampler): it still has a trace id and span id, so logs carry
them and traceparent still propagates, but no attributes, events or exports are kept.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

_configured = False
_exporting = False


class _NoOrphanClientSpans(Sampler):
    """Root sampler: never a CLIENT root span (a database or Redis call, or an outgoing RPC, made
    outside any request, job or event span); other roots as `ratio` says (a fraction of trace ids)."""

    def __init__(self, ratio: float = 1.0) -> None:
        self._roots = ALWAYS_ON if ratio >= 1 else TraceIdRatioBased(max(ratio, 0.0))

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None, trace_state: TraceState | None = None) -> SamplingResult:
        if kind is SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return self._roots.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"NoOrphanClientSpans({self._roots.get_description()})"


def _root_ratio() -> float:
    """OTEL_TRACES_SAMPLER_ARG, the standard variable: the fraction of new traces recorded (default 1)."""
    try:
        return min(max(float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1")), 0.0), 1.0)
    except ValueError:
        return 1.0


def exporting() -> bool:
    """True when this process records and exports spans (an exporter was configured)."""
    return _exporting


def configure_tracing(service: str, otlp_endpoint: str | None = None, exporter: SpanExporter | None = None) -> None:
    """Install this process's tracer provider (once): exporting to `exporter`, else to the OTLP/gRPC
    collector at `otlp_endpoint`, else nowhere (see the module docstring for what each costs)."""
    global _configured, _exporting
    if _configured:
        return
    if exporter is None and otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True)
    provider = tracer_provider(service, exporter)
    trace.set_tracer_provider(provider)
    if exporter is not None:
        _instrument_clients(provider)
    _configured = True
    _exporting = exporter is not None


def tracer_provider(service: str, exporter: SpanExporter | None, *, batch: bool = True) -> TracerProvider:
    """The provider configure_tracing installs: recording and exporting to `exporter` (in batches,
    unless `batch=False`), or, without one, non-recording (ALWAYS_OFF)."""
    sampler = ParentBased(root=_NoOrphanClientSpans(_root_ratio())) if exporter is not None else ALWAYS_OFF
    provider = TracerProvider(resource=Resource.create({"service.name": f"mcloud-{service}"}), sampler=sampler)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    return provider


def _instrument_clients(provider: TracerProvider) -> None:
    """SQL and Redis client spans (asyncpg and redis-py patched process-wide; SQL text without its
    parameters, which may hold PII)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    AsyncPGInstrumentor(capture_parameters=False).instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)


def inject_traceparent(context: Context | None = None) -> tuple[str, str]:
    """The W3C (traceparent, tracestate) of `context` (default: the current one), empty strings when
    there is no span."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return carrier.get("traceparent", ""), carrier.get("tracestate", "")


def current_traceparent() -> str:
    """The current span's traceparent to keep with work done later (a timer, a queued row), so that work
    can link to it; "" when this process does not export (nothing would ever see the link)."""
    return inject_traceparent()[0] if _exporting else ""


def extract_context(traceparent: str, tracestate: str = ""):
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return propagate.extract(carrier)


def span_link(traceparent: str, tracestate: str = "") -> Link | None:
    """A link to the span a W3C traceparent names (None when it is empty or invalid)."""
    if not traceparent:
        return None
    ctx = trace.get_current_span(extract_context(traceparent, tracestate)).get_span_context()
    return Link(ctx) if ctx.is_valid else None
