"""The template routes over HTTP against a REAL messaging service (its own database, real Valkey, a
ManualClock): create, replace into versions, identical content keeping the version, reads at a version,
listing by channel page by page, previews, scopes, problems and tenancy. Every test makes its own tenant."""

from __future__ import annotations

import copy
import uuid

import httpx
import pytest

from gateway.testing import assert_problem, bearer, scoped_key

WELCOME = {
    "name": "Welcome",
    "description": "first mail",
    "channel": "email",
    "default_locale": "en",
    "variants": [
        {"locale": "en", "subject": "Welcome {{ profile.first_name | default: 'friend' }}",
         "body_html": "<p>Hi {{ profile.first_name }}, use <b>{{ coupon.code }}</b>.</p>"},
        {"locale": "zh-cn", "subject": "欢迎 {{ profile.first_name }}", "body_text": "你好 {{ profile.first_name }}"},
    ],
}
PUSH = {
    "name": "Back in stock",
    "channel": "push",
    "variants": [{"locale": "en", "title": "{{ item }} is back", "body_text": "Get it now",
                  "data": {"deep_link": "app://item/{{ item_id }}", "badge": 1}}],
}





@pytest.fixture
def client(messaging_client) -> httpx.AsyncClient:
    return messaging_client


@pytest.fixture
async def tenant(make_tenant):
    return await make_tenant()


@pytest.fixture
def admin(tenant) -> dict[str, str]:
    return bearer(tenant.secret_key)


async def create(client, headers, body=None, **extra) -> dict:
    r = await client.post("/v1/templates", headers=headers, json=body or WELCOME, **extra)
    assert r.status_code == 201, r.text
    return r.json()


async def test_create_replace_and_read_versions_with_a_retried_create_making_one(client, tenant, db,
                                                                                  messaging_clock):
    writer = await scoped_key(db, tenant, "messaging:write")
    reader = await scoped_key(db, tenant, "messaging:read")
    key = {"Idempotency-Key": f"welcome-{uuid.uuid4()}"}
    r = await client.post("/v1/templates", headers={**writer, **key}, json=WELCOME)
    assert r.status_code == 201, r.text
    created = r.json()
    assert r.headers["Location"] == f"/v1/templates/{created['id']}"
    assert (created["version"], created["latest_version"], created["channel"]) == (1, 1, "email")
    assert [v["locale"] for v in created["variants"]] == ["en", "zh-CN"]
    again = await client.post("/v1/templates", headers={**writer, **key}, json=WELCOME)
    assert again.status_code == 201 and again.json()["id"] == created["id"]

    tid = created["id"]
    same = await client.put(f"/v1/templates/{tid}", headers=writer, json=WELCOME)
    assert same.status_code == 200 and same.json()["version"] == 1

    messaging_clock.advance(seconds=1)
    changed = copy.deepcopy(WELCOME)
    changed["variants"][0]["subject"] = "Hello {{ profile.first_name }}"
    v2 = (await client.put(f"/v1/templates/{tid}", headers=writer, json=changed)).json()
    assert (v2["version"], v2["latest_version"]) == (2, 2)

    latest = await client.get(f"/v1/templates/{tid}", headers=reader)
    assert latest.status_code == 200 and latest.json()["variants"][0]["subject"].startswith("Hello")
    old = (await client.get(f"/v1/templates/{tid}", params={"version": 1}, headers=reader)).json()
    assert (old["version"], old["latest_version"]) == (1, 2)
    assert old["variants"][0]["subject"].startswith("Welcome")
    assert_problem(await client.get(f"/v1/templates/{tid}", params={"version": 9}, headers=reader), 404,
                   "template_version_not_found")


async def test_list_by_channel_page_by_page(client, admin, messaging_clock):
    mail = (await create(client, admin))["id"]
    messaging_clock.advance(seconds=1)
    push = (await create(client, admin, PUSH))["id"]
    messaging_clock.advance(seconds=1)

    first = (await client.get("/v1/templates", params={"limit": 1}, headers=admin)).json()
    assert [t["id"] for t in first["templates"]] == [push]
    assert first["templates"][0]["variants"][0]["data"] == PUSH["variants"][0]["data"]
    second = (await client.get("/v1/templates", params={"limit": 1, "cursor": first["next_cursor"]},
                               headers=admin)).json()
    assert [t["id"] for t in second["templates"]] == [mail] and second["next_cursor"] is None
    pushes = (await client.get("/v1/templates", params={"channel": "push"}, headers=admin)).json()
    assert [t["id"] for t in pushes["templates"]] == [push]
    assert_problem(await client.get("/v1/templates", params={"channel": "best"}, headers=admin), 400,
                   "invalid_request")
    assert_problem(await client.get("/v1/templates", params={"cursor": "nope"}, headers=admin), 400,
                   "invalid_page_token")


async def test_preview_with_variables_locale_and_data(client, tenant, db):
    writer = await scoped_key(db, tenant, "messaging:write")
    reader = await scoped_key(db, tenant, "messaging:read")
    tid = (await create(client, writer))["id"]
    r = await client.post(f"/v1/templates/{tid}/preview", headers=reader,
                          json={"variables": {"profile": {"first_name": "<Rachel>"}, "coupon": {"code": "W10"}}})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["locale"] == "en" and out["subject"] == "Welcome <Rachel>"
    assert "Hi &lt;Rachel&gt;, use <b>W10</b>." in out["body_html"]
    assert out["body_text"] == "Hi <Rachel>, use W10." and out["missing_variables"] == []

    zh = (await client.post(f"/v1/templates/{tid}/preview", headers=reader, json={"locale": "zh"})).json()
    assert (zh["locale"], zh["subject"], zh["missing_variables"]) == ("zh-CN", "欢迎", ["profile.first_name"])

    pid = (await create(client, writer, PUSH))["id"]
    out = (await client.post(f"/v1/templates/{pid}/preview", headers=reader,
                             json={"variables": {"item": "Tea", "item_id": "42"}})).json()
    assert out["title"] == "Tea is back" and out["data"] == {"deep_link": "app://item/42", "badge": 1}


async def test_invalid_templates_are_problems_naming_the_field(client, admin):
    broken = copy.deepcopy(WELCOME)
    broken["variants"][1]["body_text"] = "line one\n{% if x %}"
    body = assert_problem(await client.post("/v1/templates", headers=admin, json=broken), 400,
                          "template_syntax_error")
    assert body["detail"].startswith("variants[1].body_text: ")
    no_subject = copy.deepcopy(WELCOME)
    no_subject["variants"][0]["subject"] = ""
    assert_problem(await client.post("/v1/templates", headers=admin, json=no_subject), 400, "subject_required")
    sandboxed = copy.deepcopy(WELCOME)
    sandboxed["variants"][0]["body_html"] = "{% include '/etc/passwd' %}"
    assert_problem(await client.post("/v1/templates", headers=admin, json=sandboxed), 400, "template_syntax_error")
    dup = copy.deepcopy(WELCOME)
    dup["variants"][1]["locale"] = "EN"
    assert_problem(await client.post("/v1/templates", headers=admin, json=dup), 400, "duplicate_locale")
    # shape errors stop at the gateway
    assert_problem(await client.post("/v1/templates", headers=admin, json={**WELCOME, "channel": "best"}), 422,
                   "validation_failed")
    assert_problem(await client.post("/v1/templates", headers=admin, json={**WELCOME, "variants": []}), 422,
                   "validation_failed")
    tid = (await create(client, admin))["id"]
    assert_problem(await client.put(f"/v1/templates/{tid}", headers=admin, json={**WELCOME, "channel": "sms"}),
                   400, "body_required")
    assert_problem(await client.post(f"/v1/templates/{tid}/preview", headers=admin,
                                     json={"profile_id": "not a profile"}), 422, "validation_failed")


async def test_unknown_templates_are_404(client, admin):
    missing = uuid.uuid4()
    assert_problem(await client.get(f"/v1/templates/{missing}", headers=admin), 404, "template_not_found")
    assert_problem(await client.put(f"/v1/templates/{missing}", headers=admin, json=WELCOME), 404,
                   "template_not_found")
    assert_problem(await client.post(f"/v1/templates/{missing}/preview", headers=admin, json={}), 404,
                   "template_not_found")
    assert_problem(await client.get("/v1/templates/not-a-uuid", headers=admin), 400, "invalid_request")


async def test_scopes_reads_and_previews_need_read_changes_need_write(client, tenant, db):
    reader = await scoped_key(db, tenant, "messaging:read")
    other_scope = await scoped_key(db, tenant, "journeys:write")
    assert_problem(await client.post("/v1/templates", headers=reader, json=WELCOME), 403, "insufficient_scope")
    assert_problem(await client.get("/v1/templates", headers=other_scope), 403, "insufficient_scope")
    assert_problem(await client.get("/v1/templates"), 401)
    tid = (await create(client, bearer(tenant.secret_key)))["id"]
    assert_problem(await client.put(f"/v1/templates/{tid}", headers=reader, json=WELCOME), 403, "insufficient_scope")
    r = await client.post(f"/v1/templates/{tid}/preview", headers=reader, json={})
    assert r.status_code == 200, r.text


async def test_another_tenant_sees_none_of_it(client, admin, make_tenant):
    tid = (await create(client, admin))["id"]
    other = bearer((await make_tenant()).secret_key)
    assert_problem(await client.get(f"/v1/templates/{tid}", headers=other), 404, "template_not_found")
    assert (await client.get("/v1/templates", headers=other)).json()["templates"] == []


async def test_openapi_lists_the_template_routes_under_their_tag(client):
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in ("/v1/templates", "/v1/templates/{template_id}", "/v1/templates/{template_id}/preview"):
        assert path in paths, path
        assert all(op["tags"] == ["templates"] for op in paths[path].values()), path
    for path, method in (("/v1/templates", "post"), ("/v1/templates/{template_id}", "put")):
        assert "Idempotency-Key" in {p["name"] for p in paths[path][method]["parameters"]}, path
    assert spec["components"]["schemas"]["TemplateWrite"]["examples"]
    assert {"400", "401", "403", "404", "422"} <= set(paths["/v1/templates/{template_id}/preview"]["post"]["responses"])
