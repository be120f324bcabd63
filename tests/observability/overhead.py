"""What tracing costs on a hot RPC: identity's GetProfile (one SQL read) called N times in a loop,
client and in-process server in one process, CPU time per call, in three set-ups:

  before  what configure_tracing did before the ALWAYS_OFF sampler, for comparison: no exporter but
          every span recorded (and dropped at its end)
  off   no exporter (the default): ALWAYS_OFF sampler, nothing instrumented, no client span
  otlp  OTLP/gRPC exporter to a local collector: every span recorded and exported (gRPC client and
        server spans, asyncpg spans), batch export in a background thread (its CPU counted too)

Each call runs inside a SERVER span, as the gateway makes it (4 spans per call when exporting: that
span, the gRPC client and server spans, the SQL span).

    .venv/bin/python tests/observability/overhead.py [--calls 5000]

Not a test (it prints numbers); each set-up runs in a fresh process, as configure_tracing is once per
process."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent import futures
from pathlib import Path

MODES = ("before", "off", "otlp")


async def _measure(db_url: str, redis_url: str, calls: int) -> dict:
    from opentelemetry import trace

    from identity.app import MIGRATIONS, build
    from identity.settings import IdentitySettings
    from mcloud.identity.v1 import identity_pb2, identity_pb2_grpc
    from mcloud_common.db import ensure_database
    from mcloud_common.grpc_client import tenant_metadata
    from mcloud_common.migrations import upgrade_async
    from mcloud_common.testing.services import running_service

    await ensure_database(db_url)
    await upgrade_async(MIGRATIONS, db_url)
    settings = IdentitySettings(database_url=db_url, redis_url=redis_url, grpc_port=0)
    async with running_service(build, settings, jobs=False) as (_, channel):
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        md = tenant_metadata(str(uuid.uuid4()))
        ingested = await stub.IngestEvents(identity_pb2.IngestEventsRequest(events=[identity_pb2.InboundEvent(
            type=identity_pb2.CALL_TYPE_IDENTIFY, message_id=uuid.uuid4().hex, user_id="overhead")]), metadata=md)
        request = identity_pb2.GetProfileRequest(profile_id=ingested.profile_ids[0])
        tracer = trace.get_tracer("overhead")

        async def call() -> None:
            # as the gateway calls: inside its request's server span
            with tracer.start_as_current_span("GET /v1/profiles/{identifier}", kind=trace.SpanKind.SERVER):
                await stub.GetProfile(request, metadata=md)

        for _ in range(max(calls // 10, 200)):  # warm up: connections, prepared statements, caches
            await call()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(calls):
            await call()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"calls": calls, "cpu_us_per_call": round(cpu / calls * 1e6, 1),
            "wall_us_per_call": round(wall / calls * 1e6, 1)}


def _child(mode: str, db_url: str, redis_url: str, endpoint: str, calls: int) -> None:
    from mcloud_common.telemetry import configure_tracing

    if mode == "before":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())
    else:
        configure_tracing("identity", endpoint if mode == "otlp" else None)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps({"mode": mode, **asyncio.run(_measure(db_url, redis_url, calls))}))
    from opentelemetry import trace

    trace.get_tracer_provider().shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=MODES)
    parser.add_argument("--db")
    parser.add_argument("--redis")
    parser.add_argument("--endpoint", default="")
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.db, args.redis, args.endpoint, args.calls)
        return

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    from mcloud_common.db import with_database
    from mcloud_common.embedded import EmbeddedPostgres, EmbeddedValkey, free_port

    received = [0]

    class Sink(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            received[0] += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            return trace_service_pb2.ExportTraceServiceResponse()

    collector = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Sink(), collector)
    endpoint = f"http://127.0.0.1:{collector.add_insecure_port('127.0.0.1:0')}"
    collector.start()
    root = Path(tempfile.mkdtemp(prefix="mcloud-otel-overhead-"))
    pg, valkey = EmbeddedPostgres(root / "pg", free_port()), EmbeddedValkey(root / "valkey", free_port())
    pg.start(fast=True)
    valkey.start(persist=False)
    try:
        for r in range(args.rounds):
            for mode in MODES:
                db = with_database(pg.url(), f"overhead_{mode}_{r}")
                out = subprocess.run([sys.executable, __file__, "--child", mode, "--db", db, "--redis", valkey.url,
                                      "--endpoint", endpoint, "--calls", str(args.calls)],
                                     check=True, capture_output=True, text=True, env=os.environ)
                print(out.stdout.strip().splitlines()[-1], flush=True)
        print(json.dumps({"spans_received_by_collector": received[0]}))
    finally:
        collector.stop(None)
        valkey.destroy()
        pg.destroy()


if __name__ == "__main__":
    main()
