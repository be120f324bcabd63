"""The tracing work of one gateway -> service RPC with one SQL statement, without the RPC itself: CPU
per request in a tight loop, per set-up (see overhead.py for the end-to-end figure).

    .venv/bin/python tests/observability/overhead_micro.py [--n 50000]

Per request: the gateway's server span, the client interceptor (a CLIENT span only when exporting),
the service's extract + SERVER span, one SQL span (only when exporting: asyncpg is instrumented then),
the log processor reading the ids ("before": the old set-up, no client or SQL span but the two server
spans recorded and dropped). Exporting mode encodes spans to OTLP protobuf in the batch thread
(as the exporter would) and drops the bytes, so no network cost is counted."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class EncodeOnly(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans):
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        encode_spans(spans).SerializeToString()
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def run(mode: str, n: int) -> dict:
    from mcloud_common.telemetry import extract_context, inject_traceparent, tracer_provider

    exporter = EncodeOnly() if mode == "otlp" else None
    if mode == "before":
        from opentelemetry.sdk.trace import TracerProvider

        provider = TracerProvider()
    else:
        provider = tracer_provider("micro", exporter)
    tracer = provider.get_tracer("micro")
    exporting = exporter is not None

    def request() -> None:
        span = tracer.start_span("POST", kind=trace.SpanKind.SERVER, attributes={"http.request.method": "POST"})
        token = otel_context.attach(trace.set_span_in_context(span))
        if exporting:
            client = tracer.start_span("/svc/Rpc", kind=trace.SpanKind.CLIENT,
                                       attributes={"rpc.system": "grpc", "rpc.method": "/svc/Rpc"})
            traceparent, _ = inject_traceparent(trace.set_span_in_context(client))
        else:
            client = None
            traceparent, _ = inject_traceparent()
        # the service side
        parent = extract_context(traceparent)
        t2 = otel_context.attach(parent)
        server = tracer.start_span("/svc/Rpc", kind=trace.SpanKind.SERVER,
                                   attributes={"rpc.system": "grpc", "rpc.method": "/svc/Rpc"})
        t3 = otel_context.attach(trace.set_span_in_context(server))
        ctx = trace.get_current_span().get_span_context()  # logs.py
        assert ctx.is_valid
        if exporting:
            with tracer.start_as_current_span("SELECT", kind=trace.SpanKind.CLIENT,
                                              attributes={"db.system": "postgresql", "db.statement": "SELECT 1"}):
                pass
        otel_context.detach(t3)
        server.end()
        otel_context.detach(t2)
        if client is not None:
            client.set_attribute("rpc.grpc.status_code", 0)
            client.end()
        span.set_attribute("http.route", "/v1/track")
        span.update_name("POST /v1/track")
        otel_context.detach(token)
        span.end()

    for _ in range(n // 10):
        request()
    cpu = time.process_time()
    for _ in range(n):
        request()
    provider.force_flush()
    cpu = time.process_time() - cpu
    provider.shutdown()
    return {"mode": mode, "n": n, "cpu_us_per_request": round(cpu / n * 1e6, 2),
            **({"spans_encoded": exporter.spans} if exporter else {})}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--mode")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run(args.mode, args.n)))
        return
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for mode in ("before", "off", "otlp"):
            out = subprocess.run([sys.executable, __file__, "--mode", mode, "--n", str(args.n)], check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
            print(out, flush=True)
            best[mode] = min(best.get(mode, float("inf")), json.loads(out)["cpu_us_per_request"])
    print(json.dumps({"best_cpu_us_per_request": best}))


if __name__ == "__main__":
    main()
