"""No PII in logs or traces: request paths carry identifiers such as emails, so the gateway logs and
traces the route template (/v1/profiles/{identifier}), never the raw path; and /v1/me tells a
publishable write key nothing about its tenant."""

from __future__ import annotations

import io
import logging

import orjson
import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import gateway.routes.profiles as profile_routes
import gateway.tracing
from mcloud_common.logs import configure_logging

EMAIL = "rachel@example.com"
PATH = f"/v1/profiles/email:{EMAIL}"
TEMPLATE = "/v1/profiles/{identifier}"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def log_stream():
    """The gateway's production logging (JSON) into a StringIO; restored afterwards. The test
    client's own request log (httpx, which names the URL it calls) is silenced: it is not the
    gateway's."""
    root, client_log = logging.getLogger(), logging.getLogger("httpx")
    handlers, level, client_level = root.handlers[:], root.level, client_log.level
    saved = structlog.get_config()
    stream = io.StringIO()
    configure_logging("gateway", stream=stream)
    client_log.setLevel(logging.WARNING)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        client_log.setLevel(client_level)
        structlog.configure(**saved)
        structlog.contextvars.clear_contextvars()


@pytest.fixture
def spans(monkeypatch) -> InMemorySpanExporter:
    """The gateway's server spans, from a private tracer provider (the global one is left alone)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(gateway.tracing.trace, "get_tracer", provider.get_tracer)
    return exporter


def _log_lines(stream: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def _server_span(exporter: InMemorySpanExporter):
    [span] = [s for s in exporter.get_finished_spans() if s.instrumentation_scope.name == "mcloud.gateway"]
    return span


def _assert_no_email_in_span(span) -> None:
    assert EMAIL not in span.name
    for key, value in (span.attributes or {}).items():
        assert EMAIL not in str(value), key
    for event in span.events:
        for key, value in (event.attributes or {}).items():
            assert EMAIL not in str(value), key


async def test_unhandled_error_logs_and_traces_the_route_template(gateway, make_tenant, log_stream, spans, monkeypatch):
    def explode(identifier):
        raise RuntimeError("lookup exploded")

    monkeypatch.setattr(profile_routes, "lookup_request", explode)
    tenant = await make_tenant()
    async with gateway() as client:
        r = await client.get(PATH, headers=bearer(tenant.secret_key))
    assert r.status_code == 500
    assert r.json()["code"] == "internal"

    output = log_stream.getvalue()
    assert EMAIL not in output
    [line] = [line for line in _log_lines(log_stream) if line["event"] == "unhandled error"]
    assert line["route"] == TEMPLATE
    assert line["method"] == "GET"
    assert "path" not in line
    assert line["exception"][0]["exc_type"] == "RuntimeError"  # a structured traceback...
    assert all("locals" not in f for f in line["exception"][0]["frames"])  # ...without locals

    span = _server_span(spans)
    assert span.name == f"GET {TEMPLATE}"
    assert span.attributes["http.route"] == TEMPLATE
    assert span.attributes["http.request.method"] == "GET"
    assert span.status.status_code.name == "ERROR"
    assert "url.path" not in span.attributes
    _assert_no_email_in_span(span)


async def test_dependency_down_logs_the_route_template(gateway, make_tenant, log_stream, spans, monkeypatch):
    def refuse(identifier):
        raise ConnectionRefusedError(111, "connection refused")

    monkeypatch.setattr(profile_routes, "lookup_request", refuse)
    tenant = await make_tenant()
    async with gateway() as client:
        r = await client.get(PATH, headers=bearer(tenant.secret_key))
    assert r.status_code == 503
    assert EMAIL not in log_stream.getvalue()
    [line] = [line for line in _log_lines(log_stream) if line["event"] == "dependency unavailable"]
    assert line["route"] == TEMPLATE
    _assert_no_email_in_span(_server_span(spans))


async def test_a_successful_lookup_traces_only_the_template(gateway, make_tenant, log_stream, spans):
    tenant = await make_tenant()
    async with gateway() as client:
        r = await client.get(PATH, headers=bearer(tenant.secret_key))
    assert r.status_code == 404  # no such profile in the fake identity service
    assert EMAIL not in log_stream.getvalue()
    span = _server_span(spans)
    assert span.name == f"GET {TEMPLATE}"
    _assert_no_email_in_span(span)


async def test_an_unmatched_path_is_traced_as_unmatched(gateway, log_stream, spans):
    async with gateway() as client:
        r = await client.get(f"/v1/nothing/{EMAIL}")
    assert r.status_code == 404
    span = _server_span(spans)
    assert span.name == "GET <unmatched>"
    assert span.attributes["http.route"] == "<unmatched>"
    _assert_no_email_in_span(span)
    assert EMAIL not in log_stream.getvalue()


async def test_me_with_a_write_key_tells_nothing_about_the_tenant(gateway, make_tenant):
    tenant = await make_tenant()
    async with gateway() as client:
        w = await client.get("/v1/me", headers={"Authorization": f"Bearer {tenant.write_key}"})
        s = await client.get("/v1/me", headers=bearer(tenant.secret_key))
        schema = (await client.get("/openapi.json")).json()
    assert w.status_code == 200, w.text
    assert w.json() == {"key_kind": "write", "scopes": ["events:write"]}
    assert s.json()["tenant_id"] == tenant.tenant_id
    assert s.json()["tenant_name"] == tenant.name
    assert s.json()["key_kind"] == "secret"
    documented = schema["paths"]["/v1/me"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    refs = {option["$ref"].rsplit("/", 1)[-1] for option in documented["anyOf"]}
    assert refs == {"MeRead", "MeWriteKey"}
