"""The tracer provider every process installs (mcloud_common.telemetry.tracer_provider): without an
exporter spans cost little and record nothing but still carry ids for logs and propagation; with one,
everything inside a trace is recorded, and SQL/Redis/RPC calls made outside any trace are not."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mcloud_common.telemetry import extract_context, inject_traceparent, span_link, tracer_provider


def test_without_an_exporter_spans_record_nothing_but_carry_ids_that_propagate():
    tracer = tracer_provider("test", None).get_tracer("test")
    with tracer.start_as_current_span("request", kind=trace.SpanKind.SERVER) as span:
        assert not span.is_recording()
        ctx = span.get_span_context()
        assert ctx.is_valid  # logs.py writes these ids
        traceparent, _ = inject_traceparent()
    assert traceparent.startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-")
    assert int(traceparent[-2:], 16) & 1 == 0  # not sampled: nobody downstream records it either
    # a service continues the caller's trace id
    with tracer.start_as_current_span("rpc", context=extract_context(traceparent)) as child:
        assert child.get_span_context().trace_id == ctx.trace_id


def test_with_an_exporter_client_calls_are_recorded_inside_a_trace_and_dropped_outside():
    exporter = InMemorySpanExporter()
    tracer = tracer_provider("test", exporter, batch=False).get_tracer("test")
    with tracer.start_as_current_span("SELECT", kind=trace.SpanKind.CLIENT) as orphan:
        assert not orphan.is_recording()  # a relay poll, a consumer's XREADGROUP: not exported
        assert orphan.get_span_context().is_valid
    with tracer.start_as_current_span("request", kind=trace.SpanKind.SERVER):
        with tracer.start_as_current_span("SELECT", kind=trace.SpanKind.CLIENT):
            pass
    with tracer.start_as_current_span("process batch", kind=trace.SpanKind.CONSUMER):
        pass
    assert [(s.name, s.kind) for s in exporter.get_finished_spans()] == [
        ("SELECT", trace.SpanKind.CLIENT), ("request", trace.SpanKind.SERVER),
        ("process batch", trace.SpanKind.CONSUMER)]


def test_an_upstream_decision_not_to_sample_is_respected():
    exporter = InMemorySpanExporter()
    tracer = tracer_provider("test", exporter, batch=False).get_tracer("test")
    unsampled = extract_context(f"00-{'1' * 32}-{'2' * 16}-00")
    with tracer.start_as_current_span("rpc", context=unsampled, kind=trace.SpanKind.SERVER) as span:
        assert not span.is_recording()
    assert exporter.get_finished_spans() == ()


def test_span_link_names_the_span_of_a_traceparent_and_nothing_for_garbage():
    link = span_link(f"00-{'a' * 32}-{'b' * 16}-01")
    assert (link.context.trace_id, link.context.span_id) == (int("a" * 32, 16), int("b" * 16, 16))
    assert span_link("") is None
    assert span_link("not-a-traceparent") is None


def test_a_ratio_records_that_fraction_of_new_traces_but_never_breaks_one(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    exporter = InMemorySpanExporter()
    tracer = tracer_provider("test", exporter, batch=False).get_tracer("test")
    recorded = 0
    for _ in range(2000):
        with tracer.start_as_current_span("request", kind=trace.SpanKind.SERVER) as root:
            with tracer.start_as_current_span("SELECT", kind=trace.SpanKind.CLIENT) as child:
                assert child.is_recording() == root.is_recording()  # whole traces or nothing
            recorded += root.is_recording()
    assert 350 < recorded < 650
