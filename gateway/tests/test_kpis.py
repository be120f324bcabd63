"""GET /v1/kpis and its focused routes against the REAL services (identity, loyalty, journey, messaging,
recommend; real PostgreSQL and Valkey): an order after a click on a sent email comes back as revenue and
ROI of the email channel and of nothing else, loyalty enrolments and journey entries show up, a
service that is down leaves its section out (still 200), and bad parameters and keys are problems."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import SERVICES, GatewaySettings
from gateway.testing import assert_problem, bearer, scoped_key
from mcloud_common.embedded import free_port
from mcloud_common.testing.services import running_service, wait_until

PUBLIC_URL = "http://gateway"
SINCE = "2026-10-30T00:00:00Z"  # before the loyalty and journey services' manual clocks (1 Nov 2026)
PROGRAM = {"name": "Runners Club", "currency": "EUR",
           "tiers": [{"code": "normal", "name": "Normal", "rank": 0},
                     {"code": "silver", "name": "Silver", "rank": 1, "threshold_points": 1000}],
           "earn_rules": [{"name": "100 per order", "trigger": "order", "points": 100}]}
JOURNEY = {"entry": {"type": "api"}, "goal": {"event": "Order Completed", "within": "P7D"}, "holdout_percent": 0,
           "start": "wait-1d",
           "steps": [{"id": "wait-1d", "type": "wait", "duration": "P1D", "next": "done"},
                     {"id": "done", "type": "exit"}]}
TEMPLATE = {"name": "News", "channel": "email", "default_locale": "en",
            "variants": [{"locale": "en", "subject": "New shoes", "body_html": '<a href="https://shop.example.com/s">'
                                                                               "See</a>"}]}


@pytest.fixture(scope="module")
async def identity_port(make_database, redis_url) -> AsyncIterator[int]:
    from identity.app import MIGRATIONS, build
    from identity.settings import IdentitySettings

    db = await make_database("identity", migrations=MIGRATIONS)
    async with running_service(build, IdentitySettings(database_url=db, redis_url=redis_url, grpc_port=0)) as (s, _):
        yield s.port


@pytest.fixture(scope="module")
async def kpi_messaging_port(make_database, redis_url, identity_port) -> AsyncIterator[int]:
    """messaging with its senders and identity-events consumer, on the real identity and the system clock
    (clicks and orders are then stamped by the same clock)."""
    from messaging.app import MIGRATIONS, build
    from messaging.settings import MessagingSettings

    db = await make_database("messaging", migrations=MIGRATIONS)
    settings = MessagingSettings(database_url=db, redis_url=redis_url, grpc_port=0, send_interval_seconds=0.05,
                                 public_url=PUBLIC_URL, identity_target=f"127.0.0.1:{identity_port}")
    async with running_service(build, settings) as (s, _):
        yield s.port


@pytest.fixture(scope="module")
def ports(identity_port, loyalty_port, journey_port, kpi_messaging_port, recommend_port) -> dict[str, int]:
    return {"identity": identity_port, "loyalty": loyalty_port, "journey": journey_port,
            "messaging": kpi_messaging_port, "recommend": recommend_port}


@pytest.fixture(scope="module")
def gateway_on(gateway_db, redis_url, ports):
    """`async with gateway_on(down=("recommend",)) as client`: a gateway on the real services, those named
    in `down` pointing at a port nobody listens on."""

    @asynccontextmanager
    async def run(down: tuple[str, ...] = ()) -> AsyncIterator[httpx.AsyncClient]:
        values = {f"{name}_target": f"127.0.0.1:{free_port() if name in down else ports[name]}" for name in SERVICES}
        app = create_app(GatewaySettings(database_url=gateway_db, redis_url=redis_url, key_cache_seconds=0,
                                         **values))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
                yield http

    return run


def links():
    from messaging.domain.tracking import Links
    from messaging.settings import MessagingSettings

    settings = MessagingSettings(database_url="postgresql://x/y", redis_url="redis://x")
    return Links(settings.tracking_secret.get_secret_value().encode(), PUBLIC_URL)


async def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


async def test_the_kpi_document_composes_every_section_from_real_services(gateway_on, make_tenant, db):
    tenant = await make_tenant()
    admin, write = bearer(tenant.secret_key), {"Authorization": f"Bearer {tenant.write_key}"}
    async with gateway_on() as client:
        r = await client.post("/v1/identify", headers=write,
                              json={"userId": "kpi-1", "traits": {"email": "rachel@example.com", "first_name": "R"}})
        assert r.status_code == 200, r.text
        profile = (await ok(await client.get("/v1/profiles/user_id:kpi-1", headers=admin)))["id"]
        await ok(await client.put("/v1/messaging/channels/email", headers=admin, json={
            "provider": "log", "cost_per_message_minor": 3, "cost_currency": "EUR"}))
        template = (await ok(await client.post("/v1/templates", headers=admin, json=TEMPLATE), 201))["id"]
        message = await ok(await client.post("/v1/messages", headers=admin, json={
            "profile": profile, "template_id": template, "channel": "email", "idempotency_key": "kpi-1"}), 202)

        async def sent() -> bool:
            got = await ok(await client.get(f"/v1/messages/{message['id']}", headers=admin))
            return got["status"] == "sent"

        await wait_until(sent, message="the email sent")
        click = links().click(tenant.tenant_id, message["id"], "https://shop.example.com/s")
        assert (await client.get(click.removeprefix(PUBLIC_URL))).status_code == 302
        order = {"userId": "kpi-1", "event": "Order Completed",
                 "properties": {"order_id": "K-1", "total": 88.5, "currency": "EUR"}}
        assert (await client.post("/v1/track", headers=write, json=order)).status_code == 200
        assert (await client.post("/v1/track", headers=write, json=order)).status_code == 200  # resent

        program = (await ok(await client.post("/v1/loyalty/programs", headers=admin, json=PROGRAM), 201))["id"]
        await ok(await client.post(f"/v1/loyalty/programs/{program}/members", headers=admin,
                                   json={"profile_id": profile}), 201)
        journey = (await ok(await client.post("/v1/journeys", headers=admin,
                                              json={"name": "Post-purchase", "definition": JOURNEY}), 201))
        jid = journey["journey"]["id"]
        await ok(await client.post(f"/v1/journeys/{jid}/publish", headers=admin))
        await ok(await client.post(f"/v1/journeys/{jid}/enrollments", headers=admin, json={"profile_id": profile}),
                 201)

        reader = await scoped_key(db, tenant, "analytics:read")
        params = {"since": SINCE, "until": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}

        async def attributed() -> dict | None:
            got = await ok(await client.get("/v1/kpis/channels", headers=reader, params=params))
            return got if got["channels"] and got["channels"][0]["attributed_orders"] else None

        channels = await wait_until(attributed, timeout=15, message="the order attributed to the email")
        [email] = channels["channels"]
        assert (email["channel"], email["sent"], email["clicked"], email["attributed_orders"]) == ("email", 1, 1, 1)
        assert email["revenue"] == [{"currency": "EUR", "orders": 1, "revenue_minor": 8850}]
        assert (email["cost_minor"], email["cost_currency"]) == (3, "EUR")
        assert email["roi"] == pytest.approx((8850 - 3) / 3)

        doc = await ok(await client.get("/v1/kpis", headers=reader, params={**params, "granularity": "week"}))
    assert doc["unavailable"] == [] and doc["granularity"] == "week"
    audience = doc["audience"]
    assert (audience["known_gained"], audience["active"], audience["window_buyers"]) == (1, 1, 1)
    assert audience["lifecycle"]["first_purchase"] == 1 and audience["customers"] == 1
    [club] = doc["loyalty"]
    assert (club["program_id"], club["members"], club["members_gained"]) == (program, 1, 1)
    [post] = doc["journeys"]
    assert (post["journey_id"], post["entered"], post["status"]) == (jid, 1, "active")
    assert doc["recommendations"]["ctr_uplift"] is None
    summary = doc["summary"]
    assert (summary["members_gained"], summary["members_lost"], summary["active_profiles"]) == (1, 0, 1)
    assert summary["persons_erased"] == 0
    assert summary["attributed_revenue"] == [{"currency": "EUR", "amount_minor": 8850}]
    assert summary["messaging_cost"] == [{"currency": "EUR", "amount_minor": 3}]
    assert summary["cost_per_acquired_member"] == {"currency": "EUR", "amount_minor": 3}
    assert summary["roi"] == pytest.approx((8850 - 3) / 3)
    print("KPI document:", json.dumps(doc, indent=2))  # shown with -s: a real answer for the docs


async def test_a_service_that_is_down_leaves_its_section_out(gateway_on, make_tenant):
    tenant = await make_tenant()
    async with gateway_on(down=("recommend", "journey")) as client:
        doc = await ok(await client.get("/v1/kpis", headers=bearer(tenant.secret_key)))
        assert doc["recommendations"] is None and doc["journeys"] is None
        assert doc["unavailable"] == [{"section": "journeys", "reason": "service unavailable"},
                                      {"section": "recommendations", "reason": "service unavailable"}]
        assert doc["audience"]["profiles"] == 0 and doc["channels"]["channels"] == []
        assert doc["summary"]["recommendation_ctr_uplift"] is None and doc["summary"]["members_gained"] == 0
        assert_problem(await client.get("/v1/kpis/journeys", headers=bearer(tenant.secret_key)), 503)


async def test_bad_parameters_and_keys_are_problems(gateway_on, make_tenant, db):
    tenant = await make_tenant()
    admin = bearer(tenant.secret_key)
    async with gateway_on() as client:
        assert_problem(await client.get("/v1/kpis", headers=admin, params={
            "since": "2026-12-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"}), 400, "invalid_window")
        assert_problem(await client.get("/v1/kpis", headers=admin, params={"granularity": "hour"}), 400,
                       "invalid_request")
        assert_problem(await client.get("/v1/kpis", headers=admin, params={
            "since": "2025-01-01T00:00:00Z", "until": "2026-06-01T00:00:00Z"}), 400, "window_too_long")
        assert_problem(await client.get("/v1/kpis/channels", headers=admin, params={"since": "yesterday"}), 400,
                       "invalid_request")
        assert_problem(await client.get("/v1/kpis", headers=admin, params={"program_id": str(uuid.uuid4())}), 404,
                       "not_found")
        assert_problem(await client.get("/v1/kpis", headers=bearer(tenant.write_key)), 403, "secret_key_required")
        narrow = await scoped_key(db, tenant, "profiles:read")
        assert_problem(await client.get("/v1/kpis", headers=narrow), 403, "insufficient_scope")
        # a month series may span two years
        monthly = await ok(await client.get("/v1/kpis/audience", headers=admin, params={
            "since": "2025-01-01T00:00:00Z", "until": "2026-06-01T00:00:00Z", "granularity": "month"}))
        assert len(monthly["periods"]) == 17

        assert (await ok(await client.get("/v1/messaging/attribution", headers=admin)))["window_hours"] == 168
        put = await ok(await client.put("/v1/messaging/attribution", headers=admin,
                                        json={"window_hours": 72, "count_opens": False, "default_currency": "eur"}))
        assert put == {"window_hours": 72, "count_opens": False, "default_currency": "EUR"}
        assert_problem(await client.put("/v1/messaging/attribution", headers=admin, json={"window_hours": 0}), 422,
                       "validation_failed")
        assert_problem(await client.put("/v1/messaging/channels/email", headers=admin, json={
            "provider": "log", "cost_per_message_minor": 3}), 400, "invalid_currency")


async def test_openapi_documents_the_kpi_routes(gateway_on):
    async with gateway_on() as client:
        spec = (await client.get("/openapi.json")).json()
        problem = (await client.get("/problems/window_too_long")).json()
    assert {"/v1/kpis", "/v1/kpis/audience", "/v1/kpis/journeys", "/v1/kpis/channels",
            "/v1/messaging/attribution"} <= set(spec["paths"])
    assert spec["paths"]["/v1/kpis"]["get"]["tags"] == ["kpis"] and "kpis" in {t["name"] for t in spec["tags"]}
    assert {"KpiReport", "KpiSummary", "ChannelKpis", "JourneyKpis"} <= set(spec["components"]["schemas"])
    assert problem["status"] == 400
