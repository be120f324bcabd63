"""The identity routes over HTTP against a REAL identity service (in-process gRPC on a free port, its
own migrated database, real Valkey): profile writes, consent, merge/split and history, segments,
identity settings. Every test makes its own tenant, so they share one identity service."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import SERVICES, GatewaySettings
from gateway.testing import PROBLEM, assert_problem, bearer, scoped_key
from identity.app import MIGRATIONS as IDENTITY_MIGRATIONS
from identity.app import build as build_identity
from identity.settings import IdentitySettings
from mcloud_common.embedded import free_port
from mcloud_common.testing.services import running_service, wait_until


@pytest.fixture(scope="module")
async def identity_port(make_database, redis_url) -> AsyncIterator[int]:
    db = await make_database("identity", migrations=IDENTITY_MIGRATIONS)
    settings = IdentitySettings(database_url=db, redis_url=redis_url, grpc_port=0)
    async with running_service(build_identity, settings) as (service, _):
        yield service.port


@pytest.fixture(scope="module")
async def client(gateway_db, redis_url, identity_port) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway in front of the real identity service; the other services are absent."""
    values = {f"{name}_target": f"127.0.0.1:{free_port()}" for name in SERVICES}
    values["identity_target"] = f"127.0.0.1:{identity_port}"
    app = create_app(GatewaySettings(database_url=gateway_db, redis_url=redis_url, key_cache_seconds=0, **values))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield http


@pytest.fixture
async def tenant(make_tenant):
    return await make_tenant()


async def identify(client: httpx.AsyncClient, tenant, user_id: str, **traits) -> dict:
    """Create (or update) a person through the tracking API and return their profile."""
    r = await client.post("/v1/identify", headers=bearer(tenant.write_key), json={"userId": user_id, "traits": traits})
    assert r.status_code == 200, r.text
    profile = await client.get(f"/v1/profiles/user_id:{user_id}", headers=bearer(tenant.secret_key))
    assert profile.status_code == 200, profile.text
    return profile.json()



def new_user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


# ---- PATCH /v1/profiles/{identifier} -------------------------------------------------------------


async def test_patch_sets_traits_and_tags_and_a_retry_with_the_same_key_changes_nothing(client, tenant):
    user = new_user()
    await identify(client, tenant, user, name="Rachel")
    path, admin = f"/v1/profiles/user_id:{user}", bearer(tenant.secret_key)

    first = await client.patch(
        path,
        headers={**admin, "Idempotency-Key": "k1"},
        json={"traits": {"shoe_size": 38}, "add_tags": ["marathoner", "vip"], "source": "crm"},
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["traits"] == {"name": "Rachel", "shoe_size": 38}
    assert set(body["tags"]) == {"marathoner", "vip"}

    removed = await client.patch(path, headers=admin, json={"remove_tags": ["vip"]})
    assert removed.status_code == 200, removed.text
    assert removed.json()["tags"] == ["marathoner"]

    retry = await client.patch(
        path, headers={**admin, "Idempotency-Key": "k1"}, json={"traits": {"shoe_size": 38}, "add_tags": ["vip"]}
    )
    assert retry.status_code == 200, retry.text
    assert retry.json() == body  # the first answer, replayed
    now = (await client.get(path, headers=admin)).json()
    assert now["tags"] == ["marathoner"]  # the retry did not add vip back


async def test_patch_by_profile_id_with_a_profiles_write_key(client, tenant, db):
    profile = await identify(client, tenant, new_user())
    writer = await scoped_key(db, tenant, "profiles:write")
    r = await client.patch(f"/v1/profiles/{profile['id']}", headers=writer, json={"traits": {"city": "Shanghai"}})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == profile["id"] and r.json()["traits"]["city"] == "Shanghai"


async def test_patch_errors_are_problems(client, tenant, db):
    user = new_user()
    await identify(client, tenant, user)
    path, admin = f"/v1/profiles/user_id:{user}", bearer(tenant.secret_key)
    reader = await scoped_key(db, tenant, "profiles:read")

    bad_json = await client.patch(path, headers={**admin, "Content-Type": "application/json"}, content=b"{nope")
    wrong_type = await client.patch(path, headers=admin, json={"add_tags": "vip"})
    unknown_field = await client.patch(path, headers=admin, json={"trait": {"a": 1}})
    both = await client.patch(path, headers=admin, json={"add_tags": ["x"], "remove_tags": ["x"]})
    nobody = await client.patch("/v1/profiles/user_id:nobody-here", headers=admin, json={"traits": {"a": 1}})
    nobody_id = await client.patch(f"/v1/profiles/{uuid.uuid4()}", headers=admin, json={"traits": {"a": 1}})
    malformed = await client.patch("/v1/profiles/not-an-identifier", headers=admin, json={})
    write_key = await client.patch(path, headers=bearer(tenant.write_key), json={"traits": {"a": 1}})
    read_only = await client.patch(path, headers=reader, json={"traits": {"a": 1}})

    assert_problem(bad_json, 422, "validation_failed")
    assert assert_problem(wrong_type, 422, "validation_failed")["errors"][0]["pointer"] == "#/add_tags"
    assert_problem(unknown_field, 422, "validation_failed")
    assert_problem(both, 400, "conflicting_tags")
    assert_problem(nobody, 404, "profile_not_found")
    assert_problem(nobody_id, 404, "profile_not_found")
    assert_problem(malformed, 400, "invalid_identifier")
    assert_problem(write_key, 403, "secret_key_required")
    assert assert_problem(read_only, 403, "insufficient_scope")["required_scope"] == "profiles:write"


# ---- PUT /v1/profiles/{identifier}/consent -------------------------------------------------------


async def test_consent_is_recorded_and_the_latest_decision_wins(client, tenant):
    user = new_user()
    await identify(client, tenant, user)
    path, admin = f"/v1/profiles/user_id:{user}/consent", bearer(tenant.secret_key)

    granted = await client.put(path, headers=admin, json={
        "channel": "email", "purpose": "marketing", "state": "granted", "source": "signup_form",
        "at": "2026-11-11T10:00:00Z"})
    older = await client.put(path, headers=admin, json={
        "channel": "email", "state": "denied", "source": "crm_import", "at": "2026-01-01T00:00:00Z"})

    assert granted.status_code == 200, granted.text
    assert granted.json()["state"] == "granted" and granted.json()["channel"] == "email"
    assert older.status_code == 200, older.text
    assert older.json()["state"] == "granted"  # an older decision does not override a newer one
    profile = (await client.get(f"/v1/profiles/user_id:{user}", headers=admin)).json()
    assert profile["consents"] == [{
        "channel": "email", "purpose": "marketing", "state": "granted", "source": "signup_form",
        "at": "2026-11-11T10:00:00Z"}]


async def test_consent_errors_are_problems(client, tenant, db):
    user = new_user()
    await identify(client, tenant, user)
    path, admin = f"/v1/profiles/user_id:{user}/consent", bearer(tenant.secret_key)
    reader = await scoped_key(db, tenant, "profiles:read")

    bad_state = await client.put(path, headers=admin, json={"channel": "email", "state": "maybe"})
    naive_time = await client.put(path, headers=admin, json={
        "channel": "email", "state": "granted", "at": "2026-11-11T10:00:00"})
    bad_channel = await client.put(path, headers=admin, json={"channel": "carrier_pigeon", "state": "granted"})
    nobody = await client.put("/v1/profiles/email:nobody@example.com/consent", headers=admin,
                              json={"channel": "email", "state": "granted"})
    read_only = await client.put(path, headers=reader, json={"channel": "email", "state": "granted"})

    assert assert_problem(bad_state, 422, "validation_failed")["errors"][0]["pointer"] == "#/state"
    assert_problem(naive_time, 422, "validation_failed")
    assert_problem(bad_channel, 400, "invalid_channel")
    assert_problem(nobody, 404, "profile_not_found")
    assert_problem(read_only, 403, "insufficient_scope")


# ---- merge, history, split -----------------------------------------------------------------------


async def test_merge_then_history_then_undo_by_merge_id(client, tenant):
    admin = bearer(tenant.secret_key)
    a, email = new_user(), f"{new_user()}@example.com"
    pa = await identify(client, tenant, a, name="Rachel")
    # a second identified person, known by email only (no user_id: one profile holds one user_id)
    r = await client.post("/v1/identify", headers=bearer(tenant.write_key),
                          json={"anonymousId": f"anon-{a}", "traits": {"email": email, "city": "Shanghai"}})
    assert r.status_code == 200, r.text
    pb = (await client.get(f"/v1/profiles/email:{email}", headers=admin)).json()
    assert pb["id"] != pa["id"]

    merged = await client.post("/v1/profiles/merge", headers={**admin, "Idempotency-Key": "m1"},
                               json={"from": f"user_id:{a}", "into": f"email:{email}", "reason": "same person"})
    assert merged.status_code == 200, merged.text
    survivor = merged.json()
    assert survivor["id"] == pb["id"] and pa["id"] in survivor["merged_from"]
    assert {"type": "user_id", "value": a} in survivor["identifiers"]
    assert survivor["traits"]["name"] == "Rachel" and survivor["traits"]["city"] == "Shanghai"
    assert (await client.get(f"/v1/profiles/user_id:{a}", headers=admin)).json()["id"] == pb["id"]
    retry = await client.post("/v1/profiles/merge", headers={**admin, "Idempotency-Key": "m1"},
                              json={"from": f"user_id:{a}", "into": f"email:{email}", "reason": "same person"})
    assert retry.status_code == 200 and retry.json()["id"] == pb["id"]

    history = await client.get(f"/v1/profiles/email:{email}/merges", headers=admin)
    assert history.status_code == 200, history.text
    [record] = [m for m in history.json()["merges"] if m["from_profile_id"] == pa["id"]]
    assert record["into_profile_id"] == pb["id"] and record["reason"] == "same person"
    assert record["actor"].startswith("api_key:") and record["undone_at"] is None
    assert {"type": "user_id", "value": a} in record["moved_identifiers"]

    assert len([m for m in history.json()["merges"] if m["from_profile_id"] == pa["id"]]) == 1  # retry: once

    split = await client.post(f"/v1/profiles/email:{email}/split", headers=admin,
                              json={"merge_id": record["id"], "reason": "merged by mistake"})
    assert split.status_code == 200, split.text
    assert split.json()["original"]["id"] == pb["id"]
    assert {"type": "user_id", "value": a} in split.json()["split"]["identifiers"]
    back = (await client.get(f"/v1/profiles/user_id:{a}", headers=admin)).json()
    assert back["id"] != pb["id"]
    assert back["traits"].get("name") == "Rachel"
    again = (await client.get(f"/v1/profiles/email:{email}/merges", headers=admin)).json()["merges"]
    assert next(m for m in again if m["id"] == record["id"])["undone_at"] is not None


async def test_split_moves_identifiers_to_a_new_profile(client, tenant):
    admin = bearer(tenant.secret_key)
    user = new_user()
    r = await client.post("/v1/identify", headers=bearer(tenant.write_key),
                          json={"userId": user, "anonymousId": f"dev-{user}", "traits": {"name": "Tom"}})
    assert r.status_code == 200, r.text
    split = await client.post(f"/v1/profiles/user_id:{user}/split", headers=admin, json={
        "identifiers": [{"type": "anonymous_id", "value": f"dev-{user}"}], "reason": "shared tablet"})
    assert split.status_code == 200, split.text
    assert {"type": "anonymous_id", "value": f"dev-{user}"} in split.json()["split"]["identifiers"]
    assert {"type": "anonymous_id", "value": f"dev-{user}"} not in split.json()["original"]["identifiers"]


async def test_merge_and_split_errors_are_problems(client, tenant, db):
    admin = bearer(tenant.secret_key)
    a, b = new_user(), new_user()
    await identify(client, tenant, a)
    await identify(client, tenant, b)
    writer = await scoped_key(db, tenant, "profiles:read", "profiles:write")
    body = {"from": f"user_id:{a}", "into": f"user_id:{b}", "reason": "same person"}

    not_admin = await client.post("/v1/profiles/merge", headers=writer, json=body)
    no_from = await client.post("/v1/profiles/merge", headers=admin, json={"into": f"user_id:{b}", "reason": "x"})
    no_reason = await client.post("/v1/profiles/merge", headers=admin, json={**body, "reason": ""})
    unknown = await client.post("/v1/profiles/merge", headers=admin, json={**body, "from": "user_id:ghost"})
    itself = await client.post("/v1/profiles/merge", headers=admin, json={**body, "into": f"user_id:{a}"})
    both = await client.post(f"/v1/profiles/user_id:{b}/split", headers=admin, json={
        "merge_id": "1", "identifiers": [{"type": "user_id", "value": b}], "reason": "x"})
    neither = await client.post(f"/v1/profiles/user_id:{b}/split", headers=admin, json={"reason": "x"})
    split_not_admin = await client.post(f"/v1/profiles/user_id:{b}/split", headers=writer,
                                        json={"merge_id": "1", "reason": "x"})
    history_unknown = await client.get("/v1/profiles/user_id:ghost/merges", headers=admin)

    assert assert_problem(not_admin, 403, "insufficient_scope")["required_scope"] == "admin"
    assert assert_problem(no_from, 422, "validation_failed")["errors"][0]["pointer"] == "#/from"
    assert_problem(no_reason, 422, "validation_failed")
    assert_problem(unknown, 404, "profile_not_found")
    assert itself.status_code in (400, 409), itself.text
    assert itself.headers["content-type"] == PROBLEM
    assert_problem(both, 422, "validation_failed")
    assert_problem(neither, 422, "validation_failed")
    assert_problem(split_not_admin, 403, "insufficient_scope")
    assert_problem(history_unknown, 404, "profile_not_found")


# ---- segments ------------------------------------------------------------------------------------

# A rule tree in identity's syntax (identity-svc/README.md): people with a given tag.
def tagged(tag: str) -> dict:
    return {"tag": tag}


async def test_segment_lifecycle_and_membership(client, tenant, db):
    admin = bearer(tenant.secret_key)
    reader = await scoped_key(db, tenant, "segments:read", "profiles:read")
    users = [new_user() for _ in range(3)]
    for user in users:
        await identify(client, tenant, user)
    for user in users[:2]:
        r = await client.patch(f"/v1/profiles/user_id:{user}", headers=admin, json={"add_tags": ["runner"]})
        assert r.status_code == 200, r.text

    estimate = await client.post("/v1/segments/estimate", headers=reader, json={"rules": tagged("runner")})
    assert estimate.status_code == 200, estimate.text
    assert estimate.json() == {"count": 2, "total": 3}

    created = await client.post("/v1/segments", headers={**admin, "Idempotency-Key": "seg-1"}, json={
        "name": "Runners", "description": "tagged runner", "rules": tagged("runner")})
    assert created.status_code == 201, created.text
    segment = created.json()
    assert created.headers["location"] == f"/v1/segments/{segment['id']}"
    assert (segment["name"], segment["rules"]) == ("Runners", tagged("runner"))
    retried = await client.post("/v1/segments", headers={**admin, "Idempotency-Key": "seg-1"}, json={
        "name": "Runners", "description": "tagged runner", "rules": tagged("runner")})
    assert retried.json()["id"] == segment["id"]

    async def members() -> list[str] | None:
        page = (await client.get(f"/v1/segments/{segment['id']}/members", headers=reader)).json()
        return page["profile_ids"] if len(page["profile_ids"]) == 2 else None

    ids = await wait_until(members, timeout=15, message="two members")
    first = (await client.get(f"/v1/profiles/user_id:{users[0]}", headers=admin)).json()
    assert first["id"] in ids
    assert segment["id"] in first["segment_ids"]
    mine = await client.get(f"/v1/profiles/user_id:{users[0]}/segments", headers=reader)
    assert mine.json() == {"profile_id": first["id"], "segment_ids": [segment["id"]]}
    outsider = await client.get(f"/v1/profiles/user_id:{users[2]}/segments", headers=reader)
    assert outsider.json()["segment_ids"] == []

    # paginated export: one per page, then the end
    page1 = (await client.get(f"/v1/segments/{segment['id']}/members?page_size=1", headers=reader)).json()
    assert len(page1["profile_ids"]) == 1 and page1["next_page_token"]
    page2 = (await client.get(f"/v1/segments/{segment['id']}/members",
                              params={"page_size": 1, "page_token": page1["next_page_token"]}, headers=reader)).json()
    assert set(page1["profile_ids"] + page2["profile_ids"]) == set(ids)

    listed = (await client.get("/v1/segments", headers=reader)).json()["segments"]
    assert [s["id"] for s in listed] == [segment["id"]]
    got = (await client.get(f"/v1/segments/{segment['id']}", headers=reader)).json()
    assert got["member_count"] == 2

    replaced = await client.put(f"/v1/segments/{segment['id']}", headers=admin, json={
        "name": "Runners (renamed)", "rules": tagged("runner")})
    assert replaced.status_code == 200 and replaced.json()["name"] == "Runners (renamed)"
    chosen = str(uuid.uuid4())
    put_new = await client.put(f"/v1/segments/{chosen}", headers=admin, json={"name": "Empty", "rules": tagged("x")})
    assert put_new.status_code == 200 and put_new.json()["id"] == chosen

    deleted = await client.delete(f"/v1/segments/{segment['id']}", headers=admin)
    assert deleted.status_code == 204
    assert_problem(await client.get(f"/v1/segments/{segment['id']}", headers=reader), 404)
    assert_problem(await client.delete(f"/v1/segments/{segment['id']}", headers=admin), 404)


async def test_segment_errors_are_problems(client, tenant, db):
    admin = bearer(tenant.secret_key)
    reader = await scoped_key(db, tenant, "segments:read")
    profiles_only = await scoped_key(db, tenant, "profiles:read")

    read_only = await client.post("/v1/segments", headers=reader, json={"name": "x", "rules": tagged("x")})
    no_scope = await client.get("/v1/segments", headers=profiles_only)
    write_key = await client.get("/v1/segments", headers=bearer(tenant.write_key))
    not_uuid = await client.get("/v1/segments/not-a-uuid", headers=admin)
    unknown = await client.get(f"/v1/segments/{uuid.uuid4()}", headers=admin)
    unknown_members = await client.get(f"/v1/segments/{uuid.uuid4()}/members", headers=admin)
    no_rules = await client.post("/v1/segments", headers=admin, json={"name": "x"})
    bad_rules = await client.post("/v1/segments", headers=admin, json={"name": "x", "rules": {"nonsense": True}})
    bad_estimate = await client.post("/v1/segments/estimate", headers=admin, json={"rules": {"nonsense": True}})
    bad_page = await client.get(f"/v1/segments/{uuid.uuid4()}/members?page_size=0", headers=admin)

    assert assert_problem(read_only, 403, "insufficient_scope")["required_scope"] == "segments:write"
    assert_problem(no_scope, 403, "insufficient_scope")
    assert_problem(write_key, 403, "secret_key_required")
    assert_problem(not_uuid, 400, "invalid_request")
    assert_problem(unknown, 404)
    assert_problem(unknown_members, 404)
    assert_problem(no_rules, 422, "validation_failed")
    assert_problem(bad_rules, 400)
    assert_problem(bad_estimate, 400)
    assert_problem(bad_page, 400, "invalid_request")


# ---- identity settings ---------------------------------------------------------------------------


async def test_settings_read_and_replace(client, tenant):
    admin = bearer(tenant.secret_key)
    defaults = await client.get("/v1/identity/settings", headers=admin)
    assert defaults.status_code == 200, defaults.text
    assert defaults.json()["default_region"] == "CN"
    assert defaults.json()["identifiers"]["email"]["normalise"] == "email"

    changed = await client.put("/v1/identity/settings", headers=admin, json={
        "default_region": "US", "lifecycle": {"churn_after_days": 90}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["default_region"] == "US"
    assert changed.json()["lifecycle"]["churn_after_days"] == 90
    again = (await client.get("/v1/identity/settings", headers=admin)).json()
    assert again == changed.json()


async def test_settings_errors_are_problems(client, tenant, db):
    admin = bearer(tenant.secret_key)
    not_admin = await scoped_key(db, tenant, "profiles:read", "profiles:write", "segments:write")

    unknown_key = await client.put("/v1/identity/settings", headers=admin, json={"default_regoin": "US"})
    bad_value = await client.put("/v1/identity/settings", headers=admin, json={"default_region": "usa"})
    not_object = await client.put("/v1/identity/settings", headers=admin, json=["x"])
    denied_get = await client.get("/v1/identity/settings", headers=not_admin)
    denied_put = await client.put("/v1/identity/settings", headers=not_admin, json={})

    assert "default_regoin" in assert_problem(unknown_key, 400, "invalid_settings")["detail"]
    assert_problem(bad_value, 400, "invalid_settings")
    assert_problem(not_object, 422, "validation_failed")
    assert assert_problem(denied_get, 403, "insufficient_scope")["required_scope"] == "admin"
    assert_problem(denied_put, 403, "insufficient_scope")
    # refused changes change nothing
    assert (await client.get("/v1/identity/settings", headers=admin)).json()["default_region"] == "CN"


# ---- docs ----------------------------------------------------------------------------------------


async def test_openapi_lists_the_identity_routes(client):
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths["/v1/profiles/{identifier}"]) == {"get", "patch", "delete"}  # delete: erasure
    for path in ("/v1/profiles/{identifier}/consent", "/v1/profiles/merge", "/v1/profiles/{identifier}/split",
                 "/v1/profiles/{identifier}/merges", "/v1/profiles/{identifier}/segments", "/v1/segments",
                 "/v1/segments/estimate", "/v1/segments/{segment_id}", "/v1/segments/{segment_id}/members",
                 "/v1/identity/settings", "/v1/clerk/{identifier}"):
        assert path in paths, path
    assert {"segments", "settings", "clerk"} <= {t["name"] for t in spec["tags"]}
    merge = paths["/v1/profiles/merge"]["post"]
    assert merge["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProfileRead"}
    assert "409" in merge["responses"]
    assert spec["components"]["schemas"]["MergeRequest"]["required"] == ["from", "into", "reason"]
    assert (await client.get("/docs")).status_code == 200
