"""A whole stack started as `mcloud up` starts it, every process exporting to an in-test OTLP collector:
one request through the gateway is ONE connected trace (gateway server span -> gRPC client span ->
service server span -> SQL span), the bus carries it on to the consuming service, and every process
serves its Prometheus metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mcloud_cli.config import GATEWAY, SERVICES
from mcloud_cli.stack import start_stack

from .conftest import CLIENT, CONSUMER, SERVER, ReceivedSpan

INGEST = "/mcloud.identity.v1.IdentityService/IngestEvents"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, otlp_sink):
    _, endpoint = otlp_sink
    env = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
    for component in (*SERVICES, GATEWAY):
        env[f"{component.upper()}_OTLP_ENDPOINT"] = endpoint
        env[f"{component.upper()}_METRICS_SAMPLE_SECONDS"] = "0.5"
    with start_stack(tmp_path_factory.mktemp("observability") / "mcloud", env=env) as handle:
        yield handle


@pytest.fixture(scope="module")
def tenant(stack) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "mcloud_cli", "tenant", "create", f"otel-{uuid.uuid4().hex[:6]}", "--json",
         "--home", str(stack.home)], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def order(stack, tenant) -> str:
    """POST /v1/track of an order (identity ingests it; messaging's consumer attributes orders); the
    trace id of the gateway's server span for it."""
    user = f"otel-{uuid.uuid4().hex[:8]}"
    traceparent_trace = uuid.uuid4().hex  # the client starts the trace: the gateway must continue it
    r = httpx.post(f"{stack.gateway_url}/v1/track", auth=(tenant["write_key"], ""),
                   headers={"traceparent": f"00-{traceparent_trace}-{'ab' * 8}-01"},
                   json={"userId": user, "event": "Order Completed", "properties": {"revenue": 42}})
    assert r.status_code == 200, r.text
    return traceparent_trace


def _one(spans: list[ReceivedSpan], **want) -> ReceivedSpan | None:
    hits = [s for s in spans if all(getattr(s, k) == v for k, v in want.items())]
    return hits[0] if hits else None


def test_a_request_through_the_gateway_is_one_connected_trace_down_to_sql(otlp_sink, order):
    sink, _ = otlp_sink

    def chain(spans):
        gw = next((s for s in spans if s.trace_id == order and s.service == "mcloud-gateway" and s.kind == SERVER
                   and s.attributes.get("http.route") == "/v1/track"), None)
        client = gw and _one(spans, trace_id=order, service="mcloud-gateway", kind=CLIENT, name=INGEST,
                             parent_id=gw.span_id)
        server = client and _one(spans, trace_id=order, service="mcloud-identity", kind=SERVER, name=INGEST,
                                 parent_id=client.span_id)
        sql = server and next((s for s in spans if s.trace_id == order and s.parent_id == server.span_id
                               and s.kind == CLIENT and s.attributes.get("db.system") == "postgresql"), None)
        return sql and (gw, client, server, sql)

    gw, _client, server, sql = sink.wait_for(chain)
    assert gw.parent_id == "ab" * 8  # the caller's traceparent was honoured
    assert gw.name == "POST /v1/track"
    assert server.attributes["rpc.method"] == INGEST
    assert "db.statement" in sql.attributes

    def connected(spans):
        """Every span of the trace but the gateway's hangs under another span of it (children end, and
        are exported, before their parents: wait until the parents are in too)."""
        in_trace = [s for s in spans if s.trace_id == order]
        ids = {s.span_id for s in in_trace}
        return all(s.parent_id in ids for s in in_trace if s.span_id != gw.span_id) and in_trace

    in_trace = sink.wait_for(connected)
    # the gateway's own SQL (API key lookup) and Redis (rate limit) calls are children of its request span
    assert any(s.service == "mcloud-gateway" and s.attributes.get("db.system") in ("postgresql", "redis")
               and s.parent_id == gw.span_id for s in in_trace)


def test_the_consuming_service_continues_the_trace_of_the_request_that_produced_the_event(otlp_sink, order):
    sink, _ = otlp_sink

    def consumed(spans):
        server = _one(spans, trace_id=order, service="mcloud-identity", kind=SERVER, name=INGEST)
        consumer = server and next((s for s in spans if s.trace_id == order and s.service == "mcloud-messaging"
                                    and s.kind == CONSUMER and s.name == "process track"), None)
        return consumer and (server, consumer)

    server, consumer = sink.wait_for(consumed)
    # the event was enqueued inside identity's RPC: its consumer span is that span's child
    assert consumer.parent_id == server.span_id
    assert consumer.attributes["messaging.consumer.group.name"] == "messaging"
    # and the handler's SQL runs inside the consumer span
    sink.wait_for(lambda spans: any(s.parent_id == consumer.span_id and s.attributes.get("db.system") == "postgresql"
                                    for s in spans))


def test_background_polling_exports_no_orphan_sql_or_redis_spans(otlp_sink, order):
    sink, _ = otlp_sink
    sink.wait_for(lambda spans: _one(spans, trace_id=order, service="mcloud-messaging", kind=CONSUMER))
    orphans = [(s.service, s.name) for s in sink.spans() if s.kind == CLIENT and not s.parent_id]
    assert orphans == []


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_process_serves_its_metrics_with_route_templates_and_sampled_gauges(stack, order):
    urls = stack.urls["metrics"]
    assert set(urls) == {*SERVICES, GATEWAY}
    gateway = httpx.get(urls[GATEWAY]).text
    assert 'mcloud_http_server_requests_total{method="POST",route="/v1/track",status="200"}' in gateway
    assert "otel-" not in gateway  # never a raw path or identifier
    identity = _samples(httpx.get(urls["identity"]).text)
    assert identity[("mcloud_rpc_server_duration_seconds_count",
                     frozenset({("method", INGEST), ("code", "OK")}))] >= 1
    texts = {s: httpx.get(urls[s]).text for s in SERVICES}
    for s in SERVICES:
        assert "mcloud_outbox_backlog " in texts[s], s  # sampled every 0.5 s from the first tick
    assert 'mcloud_bus_consumer_lag{group="messaging",stream="events.identity.0"}' in texts["messaging"]
    assert "mcloud_journey_timer_lag_seconds " in texts["journey"]
    assert 'mcloud_messaging_send_queue_depth{when="due"}' in texts["messaging"]


def test_a_journey_step_links_to_the_event_that_enrolled_the_person(stack, tenant, otlp_sink):
    sink, _ = otlp_sink
    admin = {"Authorization": f"Bearer {tenant['secret_key']}"}
    definition = {"entry": {"type": "event", "event": "Trace Probe"}, "start": "done",
                  "steps": [{"id": "done", "type": "exit"}]}
    r = httpx.post(f"{stack.gateway_url}/v1/journeys", headers=admin, json={"name": "probe", "definition": definition})
    assert r.status_code in (200, 201), r.text
    journey_id = r.json()["journey"]["id"]
    assert httpx.post(f"{stack.gateway_url}/v1/journeys/{journey_id}/publish", headers=admin).status_code == 200
    sent: list[str] = []  # trace ids of the probes

    def step_span(spans):
        return next((s for s in spans if s.service == "mcloud-journey" and s.name == "journey step"
                     and any(t in sent for t, _ in s.links)), None)

    # journey's consumer learns of the new journey by NOTIFY (at worst within 5 s): probe until one enrolls
    for _ in range(8):
        sent.append(uuid.uuid4().hex)
        r = httpx.post(f"{stack.gateway_url}/v1/track", auth=(tenant["write_key"], ""),
                       headers={"traceparent": f"00-{sent[-1]}-{'cd' * 8}-01"},
                       json={"userId": f"probe-{uuid.uuid4().hex[:8]}", "event": "Trace Probe"})
        assert r.status_code == 200, r.text
        try:
            step = sink.wait_for(step_span, timeout=3)
            break
        except AssertionError:
            continue
    else:
        raise AssertionError("no journey step span linked to a probe's trace")
    [(trace_id, span_id)] = [link for link in step.links if link[0] in sent]
    # a new trace for the step, linked to journey's consumer span of the event that enrolled the person
    assert step.trace_id != trace_id and step.parent_id == ""
    consumer = sink.wait_for(lambda spans: _one(spans, span_id=span_id))
    assert (consumer.service, consumer.kind, consumer.name, consumer.trace_id) == (
        "mcloud-journey", CONSUMER, "process track", trace_id)
