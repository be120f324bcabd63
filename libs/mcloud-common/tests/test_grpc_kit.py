"""The gRPC server bootstrap and client factory, on a real in-process server."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from mcloud_common import errors
from mcloud_common.grpc_client import make_channel, tenant_metadata
from mcloud_common.grpc_server import GrpcService, tenant_id


class ScriptedHealth(health_pb2_grpc.HealthServicer):
    """A servicer whose Check does whatever the test scripted for the requested 'service' name."""

    def __init__(self) -> None:
        self.calls = 0
        self.seen_metadata: list[dict] = []

    async def Check(self, request, context):
        self.calls += 1
        self.seen_metadata.append(dict(context.invocation_metadata()))
        match request.service:
            case "not-found":
                raise errors.NotFound("no such thing", code="thing_not_found", thing="42")
            case "db-down":
                raise ConnectionRefusedError(111, "Connection refused")
            case "boom":
                raise RuntimeError("secret internals: password=hunter2")
            case "later":
                return await super().Check(request, context)  # the generated base: not implemented
            case "flaky" if self.calls < 3:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
            case "tenant":
                return health_pb2.HealthCheckResponse(status=1 if tenant_id(context) else 0)
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
async def scripted():
    servicer = ScriptedHealth()

    def register(server):
        # Registered under its own name next to the real health service the bootstrap adds.
        rpc = grpc.unary_unary_rpc_method_handler(
            servicer.Check,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Scripted", {"Check": rpc}),))
        return ["test.Scripted"]

    service = GrpcService("test", "127.0.0.1:0", register)
    await service.start()
    channel = make_channel(f"127.0.0.1:{service.port}", default_timeout=3)
    call = channel.unary_unary(
        "/test.Scripted/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    yield servicer, call, channel
    await channel.close()
    await service.stop()


async def test_domain_errors_become_a_status_with_a_stable_code_and_error_info(scripted):
    _, call, _ = scripted
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(health_pb2.HealthCheckRequest(service="not-found"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "no such thing"
    trailers = dict(err.value.trailing_metadata())
    assert trailers["mcloud-error-code"] == "thing_not_found"
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == ("thing_not_found", "mcloud.test", {"thing": "42"})


async def test_unexpected_errors_are_internal_without_leaking_details(scripted):
    _, call, _ = scripted
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(health_pb2.HealthCheckRequest(service="boom"))
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in (err.value.details() or "")


async def test_an_rpc_of_the_contract_not_built_yet_is_unimplemented_not_internal(scripted):
    _, call, _ = scripted
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(health_pb2.HealthCheckRequest(service="later"))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert dict(err.value.trailing_metadata())["mcloud-error-code"] == "unimplemented"


async def test_an_unreachable_database_is_unavailable_not_internal(scripted):
    servicer, call, _ = scripted
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(health_pb2.HealthCheckRequest(service="db-down"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert dict(err.value.trailing_metadata())["mcloud-error-code"] == "dependency_unavailable"
    assert servicer.calls == 4  # the client retried UNAVAILABLE (4 attempts), then gave up


async def test_client_retries_unavailable_until_it_succeeds(scripted):
    servicer, call, _ = scripted
    reply = await call(health_pb2.HealthCheckRequest(service="flaky"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert servicer.calls == 3


async def test_tenant_comes_from_metadata_and_is_required(scripted):
    _, call, _ = scripted
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(health_pb2.HealthCheckRequest(service="tenant"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(health_pb2.HealthCheckRequest(service="tenant"), metadata=tenant_metadata("not-a-uuid"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ok = await call(health_pb2.HealthCheckRequest(service="tenant"),
                    metadata=tenant_metadata("0193a5b0-0000-7000-8000-000000000001"))
    assert ok.status == 1


async def test_client_propagates_the_current_trace_to_the_server(scripted):
    servicer, call, _ = scripted
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("caller") as span:
        await call(health_pb2.HealthCheckRequest(service="ok"))
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert servicer.seen_metadata[-1]["traceparent"].split("-")[1] == trace_id
    assert trace.get_current_span().get_span_context().is_valid is False


async def test_rpcs_are_traced_as_server_spans_but_health_checks_are_not(scripted):
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _, call, channel = scripted
    await call(health_pb2.HealthCheckRequest(service="ok"))
    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    names = [s.name for s in exporter.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    assert names == ["/test.Scripted/Check"]


def _rpc_counts(method: str) -> dict[str, float]:
    """Observations of `method` per status code, read from this process's Prometheus exposition."""
    from prometheus_client import REGISTRY, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for s in family.samples:
            if s.name == "mcloud_rpc_server_duration_seconds_count" and s.labels["method"] == method:
                out[s.labels["code"]] = s.value
    return out


async def test_every_rpc_is_counted_and_timed_by_status_code(scripted):
    _, call, _ = scripted
    method = "/test.Scripted/Check"
    before = _rpc_counts(method)
    await call(health_pb2.HealthCheckRequest(service=""))
    # "flaky" aborts with UNAVAILABLE on the second call; the client retries it and the third answers
    await call(health_pb2.HealthCheckRequest(service="flaky"))
    for service in ("not-found", "boom"):
        with pytest.raises(grpc.aio.AioRpcError):
            await call(health_pb2.HealthCheckRequest(service=service))
    after = _rpc_counts(method)
    grew = {code: after[code] - before.get(code, 0.0) for code in after if after[code] != before.get(code, 0.0)}
    assert grew == {"OK": 2.0, "UNAVAILABLE": 1.0, "NOT_FOUND": 1.0, "INTERNAL": 1.0}


async def test_the_metrics_endpoint_serves_the_rpc_histogram(scripted):
    import httpx

    from mcloud_common.embedded import free_port
    from mcloud_common.metrics import bucket_percentile, histogram_buckets, serve_metrics

    _, call, _ = scripted
    port = free_port()
    serve_metrics(port)
    await call(health_pb2.HealthCheckRequest(service=""))
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    buckets = histogram_buckets(text, "mcloud_rpc_server_duration_seconds", {"method": "/test.Scripted/Check"})
    assert buckets and buckets[-1][0] == float("inf") and buckets[-1][1] >= 1
    assert bucket_percentile([], buckets, 50) is not None
    assert bucket_percentile(buckets, buckets, 99) is None  # nothing observed between two equal scrapes
