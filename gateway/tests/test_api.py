"""The gateway over HTTP: auth, problem+json, limits, Segment tracking, profiles, health.
Real PostgreSQL and Valkey; identity is a fake gRPC servicer that records what it receives."""

from __future__ import annotations

import base64
import gzip
import uuid

import asyncpg
import httpx
import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.app import create_app
from gateway.repo import MIGRATIONS
from gateway.settings import SERVICES, GatewaySettings
from gateway.tenancy import create_tenant
from mcloud.identity.v1 import identity_pb2
from mcloud_common.db import asyncpg_dsn
from mcloud_common.embedded import free_port

PROBLEM = "application/problem+json"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"/problems/{code}"
    assert body["title"]
    assert body["instance"] == response.request.url.path
    return body


# ---- auth ---------------------------------------------------------------------------------------


async def test_write_key_as_basic_user_can_track(gateway, make_tenant, fake_identity):
    servicer, _ = fake_identity
    tenant = await make_tenant()
    async with gateway() as client:
        r = await client.post(
            "/v1/track",
            headers=basic(tenant.write_key),
            json={"userId": "42", "event": "Order Completed", "properties": {"revenue": 9.5}},
        )
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "accepted": 1, "duplicates": 0, "rejected": []}
    [(tenant_id, request)] = servicer.ingested
    assert tenant_id == tenant.tenant_id
    event = request.events[0]
    assert event.type == identity_pb2.CALL_TYPE_TRACK
    assert (event.user_id, event.name) == ("42", "Order Completed")
    assert orjson.loads(event.properties_json) == {"revenue": 9.5}
    assert event.message_id and event.received_at.seconds > 0


async def test_write_key_in_body_or_as_bearer_is_accepted(gateway, make_tenant):
    tenant = await make_tenant()
    async with gateway() as client:
        r1 = await client.post("/v1/identify", json={"writeKey": tenant.write_key, "userId": "1"})
        r2 = await client.post("/v1/page", headers=bearer(tenant.write_key), json={"anonymousId": "a"})
    assert r1.status_code == 200, r1.text
    assert r2.status_code == 200, r2.text


def _altered(key: str) -> str:
    """The key with its last character changed (to a different one: a fixed "x" was a 1-in-64 no-op)."""
    return key[:-1] + ("y" if key.endswith("x") else "x")


async def test_missing_and_wrong_keys_are_401_problems_with_a_challenge(gateway, make_tenant):
    tenant = await make_tenant()
    async with gateway() as client:
        missing = await client.post("/v1/track", json={"userId": "1", "event": "x"})
        wrong = await client.post(
            "/v1/track", headers=basic("wk_" + "1" * 43), json={"userId": "1", "event": "x"}
        )
        junk = await client.get("/v1/me", headers={"Authorization": "Basic !!!"})
        secret_wrong = await client.get(
            "/v1/profiles/user_id:1", headers=bearer(_altered(tenant.secret_key))
        )
    assert_problem(missing, 401, "missing_api_key")
    assert "Basic" in missing.headers["www-authenticate"]
    assert_problem(wrong, 401, "invalid_api_key")
    assert "www-authenticate" in wrong.headers
    assert_problem(junk, 401, "invalid_api_key")
    assert_problem(secret_wrong, 401, "invalid_api_key")


async def test_write_key_cannot_read_profiles(gateway, make_tenant):
    tenant = await make_tenant()
    async with gateway() as client:
        r = await client.get("/v1/profiles/user_id:42", headers=basic(tenant.write_key))
        r2 = await client.get("/v1/profiles/user_id:42", headers=bearer(tenant.write_key))
    assert_problem(r, 403, "secret_key_required")
    assert_problem(r2, 403, "secret_key_required")


async def test_secret_key_without_the_scope_is_403(gateway, make_tenant, db):
    from gateway.tenancy import create_api_key

    tenant = await make_tenant()
    events_only = await create_api_key(db, tenant.tenant_id, "secret", ["events:write"])
    async with gateway() as client:
        r = await client.get("/v1/profiles/user_id:42", headers=bearer(events_only))
        ok = await client.post("/v1/track", headers=bearer(events_only), json={"userId": "1", "event": "x"})
    body = assert_problem(r, 403, "insufficient_scope")
    assert body["required_scope"] == "profiles:read"
    assert ok.status_code == 200


async def test_me_tells_the_tenant_and_key_kind(gateway, make_tenant):
    tenant = await make_tenant()
    async with gateway() as client:
        w = await client.get("/v1/me", headers=basic(tenant.write_key))
        s = await client.get("/v1/me", headers=bearer(tenant.secret_key))
    # a write key is publishable (shipped in browsers): it learns nothing about the tenant
    assert w.json() == {"key_kind": "write", "scopes": ["events:write"]}
    assert s.json()["tenant_id"] == tenant.tenant_id
    assert s.json()["tenant_name"] == tenant.name
    assert s.json()["key_prefix"] == tenant.secret_key[:10]
    assert s.json()["key_kind"] == "secret"
    assert s.json()["scopes"] == ["admin", "events:write", "profiles:read"]


# ---- errors and limits ----------------------------------------------------------------------------


async def test_unknown_route_and_bad_query_are_problems(gateway, make_tenant):
    tenant = await make_tenant()
    async with gateway() as client:
        nf = await client.get("/v1/nothing-here")
        bad = await client.get("/v1/profiles/user_id:1/events?limit=0", headers=bearer(tenant.secret_key))
        method = await client.get("/v1/track")
    assert_problem(nf, 404, "not_found")
    body = assert_problem(bad, 400, "invalid_request")
    assert body["errors"][0]["pointer"] == "query/limit"
    assert_problem(method, 405, "method_not_allowed")


async def test_invalid_json_is_a_400_problem(gateway, make_tenant):
    tenant = await make_tenant()
    async with gateway() as client:
        r = await client.post(
            "/v1/track",
            headers={**basic(tenant.write_key), "Content-Type": "application/json"},
            content=b"{not json",
        )
    assert_problem(r, 400, "invalid_json")


async def test_oversize_body_is_413_by_content_length_and_by_stream(gateway, make_tenant):
    tenant = await make_tenant()
    big_event = {"userId": "1", "event": "x", "properties": {"blob": "x" * 40_000}}

    async def chunks():
        payload = orjson.dumps({"batch": [big_event] * 20})
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    async with gateway() as client:
        by_length = await client.post("/v1/track", headers=basic(tenant.write_key), json=big_event)
        streamed = await client.post(
            "/v1/batch",
            headers={**basic(tenant.write_key), "Content-Type": "application/json"},
            content=chunks(),
        )
    body = assert_problem(by_length, 413, "payload_too_large")
    assert body["limit_bytes"] == 32 * 1024
    assert_problem(streamed, 413, "payload_too_large")


async def test_gzip_bomb_is_413_and_bad_encoding_is_415(gateway, make_tenant):
    tenant = await make_tenant()
    bomb = gzip.compress(orjson.dumps({"userId": "1", "event": "x", "properties": {"p": "a" * 100_000}}))
    async with gateway() as client:
        r = await client.post(
            "/v1/track",
            content=bomb,
            headers={
                **basic(tenant.write_key),
                "Content-Encoding": "gzip",
                "Content-Type": "application/json",
            },
        )
        br = await client.post(
            "/v1/track", content=b"xx", headers={**basic(tenant.write_key), "Content-Encoding": "br"}
        )
    assert len(bomb) < 32 * 1024
    assert_problem(r, 413, "payload_too_large")
    assert_problem(br, 415, "unsupported_encoding")


async def test_rate_limit_answers_429_with_retry_after(gateway, make_tenant):
    tenant = await make_tenant()
    async with gateway(rate_limit_per_second=0.5, rate_limit_burst=2) as client:
        responses = [await client.get("/v1/me", headers=basic(tenant.write_key)) for _ in range(3)]
    first, second, third = responses
    assert first.status_code == second.status_code == 200
    assert first.headers["ratelimit-limit"] == "2"
    assert first.headers["ratelimit-remaining"] == "1"
    body = assert_problem(third, 429, "rate_limited")
    assert third.headers["retry-after"] == "2"  # one token at 0.5/s, rounded up
    assert body["retry_after"] == 2
    assert third.headers["ratelimit-remaining"] == "0"


async def test_rate_limit_is_per_key(gateway, make_tenant):
    a, b = await make_tenant(), await make_tenant()
    async with gateway(rate_limit_per_second=0.5, rate_limit_burst=1) as client:
        assert (await client.get("/v1/me", headers=basic(a.write_key))).status_code == 200
        assert (await client.get("/v1/me", headers=basic(a.write_key))).status_code == 429
        assert (await client.get("/v1/me", headers=basic(b.write_key))).status_code == 200


async def test_rate_limiter_fails_open_when_valkey_is_down(gateway, make_tenant):
    tenant = await make_tenant()
    async with gateway(redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit_burst=1) as client:
        statuses = [
            (await client.get("/v1/me", headers=basic(tenant.write_key))).status_code for _ in range(3)
        ]
    assert statuses == [200, 200, 200]


# ---- tracking -------------------------------------------------------------------------------------


async def test_track_without_event_is_a_400_problem_and_nothing_is_forwarded(
    gateway, make_tenant, fake_identity
):
    servicer, _ = fake_identity
    tenant = await make_tenant()
    async with gateway() as client:
        r = await client.post("/v1/track", headers=basic(tenant.write_key), json={"userId": "1"})
        r2 = await client.post("/v1/alias", headers=basic(tenant.write_key), json={"userId": "1"})
        r3 = await client.post("/v1/identify", headers=basic(tenant.write_key), json={"traits": {}})
    assert_problem(r, 400, "missing_event")
    assert_problem(r2, 400, "missing_previous_id")
    assert_problem(r3, 400, "missing_identity")
    assert servicer.ingested == []


async def test_batch_forwards_the_valid_events_and_reports_the_bad_one_by_index(
    gateway, make_tenant, fake_identity
):
    servicer, _ = fake_identity
    tenant = await make_tenant()
    batch = {
        "batch": [
            {
                "type": "identify",
                "userId": "u1",
                "traits": {"email": "rachel@example.com"},
                "messageId": "m1",
            },
            {"type": "track", "userId": "u1", "messageId": "m2"},  # no event name
            {"type": "track", "userId": "u1", "event": "identity-rejects-me", "messageId": "m3"},
            {"type": "page", "anonymousId": "a1", "name": "Home", "messageId": "m4"},
            {"type": "group", "userId": "u1", "groupId": "g1", "messageId": "m5"},
        ],
        "context": {"library": {"name": "analytics-python"}},
    }
    async with gateway() as client:
        r = await client.post("/v1/batch", headers=basic(tenant.write_key), json=batch)
        again = await client.post("/v1/batch", headers=basic(tenant.write_key), json=batch)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    assert (body["accepted"], body["duplicates"]) == (3, 0)
    assert body["rejected"] == [
        {"index": 1, "code": "missing_event", "detail": "a track call needs a non-empty event name"},
        {"index": 2, "code": "rejected_by_identity", "detail": "no"},
    ]
    assert len(servicer.ingested) == 2  # one gRPC call per HTTP request
    first = servicer.ingested[0][1].events
    assert [e.message_id for e in first] == ["m1", "m3", "m4", "m5"]
    assert all(e.channel == "server" for e in first)
    assert first[3].group_id == "g1"
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 3)


async def test_batch_envelope_errors_are_400(gateway, make_tenant):
    tenant = await make_tenant()
    async with gateway() as client:
        r = await client.post("/v1/batch", headers=basic(tenant.write_key), json={"batch": "nope"})
        empty = await client.post("/v1/batch", headers=basic(tenant.write_key), json={"batch": []})
    assert_problem(r, 400, "invalid_request")
    assert empty.json() == {"success": True, "accepted": 0, "duplicates": 0, "rejected": []}


async def test_gzip_body_is_accepted(gateway, make_tenant, fake_identity):
    servicer, _ = fake_identity
    tenant = await make_tenant()
    payload = gzip.compress(
        orjson.dumps(
            {
                "batch": [
                    {"type": "track", "anonymousId": "a", "event": f"e{i}", "context": {"channel": "pos"}}
                    for i in range(50)
                ]
            }
        )
    )
    async with gateway() as client:
        r = await client.post(
            "/v1/batch",
            content=payload,
            headers={
                **basic(tenant.write_key),
                "Content-Encoding": "gzip",
                "Content-Type": "application/json",
            },
        )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 50
    assert {e.channel for e in servicer.all_events()} == {"pos"}


async def test_clock_skew_is_corrected_on_the_way_to_identity(gateway, make_tenant, fake_identity):
    servicer, _ = fake_identity
    tenant = await make_tenant()
    async with gateway() as client:
        r = await client.post(
            "/v1/track",
            headers=basic(tenant.write_key),
            json={
                "userId": "1",
                "event": "x",
                "timestamp": "2001-01-01T00:00:00Z",
                "sentAt": "2001-01-01T00:00:10Z",
            },
        )
    assert r.status_code == 200
    [event] = servicer.all_events()
    assert event.received_at.ToSeconds() - event.timestamp.ToSeconds() == 10


# ---- profiles -------------------------------------------------------------------------------------


def _profile(pid: str) -> identity_pb2.Profile:
    ts = Timestamp(seconds=1_800_000_000)
    return identity_pb2.Profile(
        id=pid,
        identifiers=[
            identity_pb2.Identifier(type="user_id", value="42"),
            identity_pb2.Identifier(type="email", value="rachel@example.com"),
        ],
        traits_json='{"name": "Rachel"}',
        tags=["vip"],
        lifecycle_stage="active",
        computed_json="{}",
        created_at=ts,
        updated_at=ts,
        merged_from=["m-1"],
    )


async def test_profile_by_id_and_by_identifier(gateway, make_tenant, fake_identity):
    servicer, _ = fake_identity
    tenant = await make_tenant()
    pid = str(uuid.uuid4())
    servicer.profiles[(tenant.tenant_id, pid)] = _profile(pid)
    servicer.events[(tenant.tenant_id, pid)] = [
        identity_pb2.ProfileEvent(
            id="e1",
            type=identity_pb2.CALL_TYPE_TRACK,
            name="Order Completed",
            properties_json='{"revenue": 1}',
            timestamp=Timestamp(seconds=1_800_000_000),
            channel="web",
            message_id="m1",
        )
    ]
    async with gateway() as client:
        by_id = await client.get(f"/v1/profiles/{pid}", headers=bearer(tenant.secret_key))
        by_email = await client.get("/v1/profiles/email:rachel@example.com", headers=basic(tenant.secret_key))
        events = await client.get(
            "/v1/profiles/user_id:42/events?limit=10", headers=bearer(tenant.secret_key)
        )
    assert by_id.status_code == 200, by_id.text
    body = by_id.json()
    assert body["id"] == pid
    assert body["identifiers"] == [
        {"type": "user_id", "value": "42"},
        {"type": "email", "value": "rachel@example.com"},
    ]
    assert body["traits"] == {"name": "Rachel"}
    assert body["tags"] == ["vip"] and body["merged_from"] == ["m-1"]
    assert body["created_at"].startswith("2027-01-15")
    assert by_email.json()["id"] == pid
    page = events.json()
    assert page["profile_id"] == pid and page["next_cursor"] == "next-1"
    assert page["events"][0]["type"] == "track" and page["events"][0]["properties"] == {"revenue": 1}


async def test_another_tenants_profile_is_not_found(gateway, make_tenant, fake_identity):
    servicer, _ = fake_identity
    owner, other = await make_tenant(), await make_tenant()
    pid = str(uuid.uuid4())
    servicer.profiles[(owner.tenant_id, pid)] = _profile(pid)
    async with gateway() as client:
        r = await client.get(f"/v1/profiles/{pid}", headers=bearer(other.secret_key))
        r2 = await client.get("/v1/profiles/user_id:42", headers=bearer(other.secret_key))
    body = assert_problem(r, 404, "profile_not_found")  # code from the mcloud-error-code trailer
    assert body["detail"] == "no such profile"
    assert_problem(r2, 404, "profile_not_found")


async def test_malformed_identifier_is_400(gateway, make_tenant):
    tenant = await make_tenant()
    async with gateway() as client:
        r = await client.get("/v1/profiles/no-colon-and-not-a-uuid", headers=bearer(tenant.secret_key))
    assert_problem(r, 400, "invalid_identifier")


async def test_identity_down_is_503_with_retry_after_and_no_internals(gateway, make_tenant):
    tenant = await make_tenant()
    async with gateway(identity_target=f"127.0.0.1:{free_port()}", grpc_timeout_seconds=2) as client:
        r = await client.post(
            "/v1/track", headers=basic(tenant.write_key), json={"userId": "1", "event": "x"}
        )
    body = assert_problem(r, 503, "service_unavailable")
    assert r.headers["retry-after"] == "1"
    assert "127.0.0.1" not in r.text and "connect" not in body["detail"].lower()


# ---- health and docs ------------------------------------------------------------------------------


async def test_healthz_needs_nothing(gateway):
    async with gateway() as client:
        r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_readyz_ok_when_everything_answers(gateway):
    async with gateway() as client:
        r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["dependencies"] == {
        name: "ok"
        for name in ("database", "valkey", "identity", "loyalty", "journey", "recommend", "messaging")
    }


async def test_readyz_reports_a_down_service_as_503(gateway):
    async with gateway(loyalty_target=f"127.0.0.1:{free_port()}", readiness_timeout_seconds=1) as client:
        r = await client.get("/readyz")
    body = assert_problem(r, 503, "not_ready")
    assert body["dependencies"]["loyalty"].startswith("down")
    assert body["dependencies"]["identity"] == "ok"
    assert "loyalty" in body["detail"]


async def test_openapi_documents_every_domain(gateway):
    async with gateway() as client:
        spec = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    assert docs.status_code == 200
    assert {t["name"] for t in spec["tags"]} >= {"tracking", "profiles", "health"}
    assert "/v1/batch" in spec["paths"] and "/v1/profiles/{identifier}" in spec["paths"]
    assert "BatchRequest" in spec["components"]["schemas"]
    assert set(spec["components"]["securitySchemes"]) == {"basic", "bearer"}


async def test_unexpected_service_failure_is_a_500_problem_without_internals(gateway, make_tenant):
    tenant = await make_tenant()
    async with gateway() as client:
        r = await client.get("/v1/profiles/user_id:boom", headers=bearer(tenant.secret_key))
    assert_problem(r, 500, "internal")
    assert "hunter2" not in r.text and "Traceback" not in r.text


async def test_problem_type_uris_resolve(gateway):
    async with gateway() as client:
        r = await client.get("/problems/rate_limited")
        missing = await client.get("/problems/nope")
    assert r.json() == {"code": "rate_limited", "status": 429, "title": "Too many requests"}
    assert_problem(missing, 404, "not_found")


async def test_gzip_batch_with_write_key_in_the_body(gateway, make_tenant):
    tenant = await make_tenant()
    payload = gzip.compress(
        orjson.dumps(
            {"writeKey": tenant.write_key, "batch": [{"type": "screen", "userId": "1", "name": "Cart"}]}
        )
    )
    async with gateway() as client:
        r = await client.post("/v1/batch", content=payload, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1


async def test_gateway_database_down_is_503_with_retry_after_not_500(redis_url, fake_identity, tmp_path):
    """Its own PostgreSQL stops under a running gateway: callers get a retryable 503 problem."""
    from mcloud_common.db import ensure_database
    from mcloud_common.embedded import EmbeddedPostgres
    from mcloud_common.migrations import upgrade_async

    server = EmbeddedPostgres(tmp_path / "pg", free_port())
    server.start(fast=True)
    try:
        url = server.url("gw_down")
        await ensure_database(url)
        await upgrade_async(MIGRATIONS, url)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        tenant = await create_tenant(conn, "doomed")
        await conn.close()
        _, port = fake_identity
        values = {f"{name}_target": f"127.0.0.1:{port}" for name in SERVICES}
        app = create_app(GatewaySettings(database_url=url, redis_url=redis_url, key_cache_seconds=0, **values))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                ok = await client.get("/v1/me", headers={"Authorization": f"Bearer {tenant.secret_key}"})
                assert ok.status_code == 200
                server.stop("immediate")
                r = await client.get("/v1/me", headers={"Authorization": f"Bearer {tenant.secret_key}"})
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "1"
                assert r.json()["code"] == "dependency_unavailable"
    finally:
        server.destroy()
