"""Tracking plan, export/erase and bulk import routes over HTTP, against a REAL identity service (gRPC
in-process on a free port, its own migrated database) instead of the fake one: problem+json codes come
from identity itself."""

from __future__ import annotations

import base64

import pytest

from gateway.tenancy import create_api_key
from identity.app import MIGRATIONS as IDENTITY_MIGRATIONS
from identity.app import build as build_identity
from identity.settings import IdentitySettings
from mcloud_common.testing.services import running_service

PROBLEM = "application/problem+json"


@pytest.fixture
async def identity_port(make_database, redis_url) -> int:
    url = await make_database("identity", migrations=IDENTITY_MIGRATIONS)
    settings = IdentitySettings(database_url=url, redis_url=redis_url, grpc_port=0)
    async with running_service(build_identity, settings, jobs=False) as (service, _):
        yield service.port


@pytest.fixture
def client(gateway, identity_port):
    return lambda: gateway(identity_target=f"127.0.0.1:{identity_port}")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert (body["status"], body["code"], body["type"]) == (status, code, f"/problems/{code}")
    return body


ORDER_PLAN = {
    "mode": "block",
    "events": {"Order Completed": {"type": "object", "properties": {"revenue": {"type": "number"}},
                                   "required": ["revenue"]}},
}


async def test_tracking_plan_blocks_events_and_shows_the_counts(client, make_tenant, db):
    tenant = await make_tenant()
    admin = bearer(tenant.secret_key)
    async with client() as http:
        r = await http.put("/v1/tracking-plan", headers=admin, json=ORDER_PLAN)
        assert r.status_code == 200, r.text
        assert r.json() == {**ORDER_PLAN, "traits": None, "allow_unplanned": True}

        r = await http.post("/v1/track", headers=basic(tenant.write_key),
                            json={"userId": "42", "event": "Order Completed", "properties": {"revenue": "x"}})
        body = problem(r, 400, "tracking_plan_violation")
        assert body["detail"] == "properties.revenue: 'x' is not of type 'number'"
        r = await http.post("/v1/batch", headers=basic(tenant.write_key), json={"batch": [
            {"type": "track", "userId": "42", "event": "Order Completed", "properties": {"revenue": 9}},
            {"type": "track", "userId": "42", "event": "Order Completed", "properties": {}},
        ]})
        assert r.status_code == 200, r.text
        assert (r.json()["accepted"], [x["code"] for x in r.json()["rejected"]]) == (1, ["tracking_plan_violation"])

        r = await http.get("/v1/tracking-plan", headers=admin)
        assert r.status_code == 200
        [violation] = r.json()["violations"]
        assert (violation["event"], violation["outcome"], violation["count"]) == ("Order Completed", "blocked", 2)
        assert violation["last_error"] == "properties: 'revenue' is a required property"
        assert violation["last_seen_at"]

        r = await http.delete("/v1/tracking-plan", headers=admin)
        assert r.status_code == 204
        r = await http.get("/v1/tracking-plan", headers=admin)
        assert r.json()["plan"] is None and r.json()["violations"][0]["count"] == 2


async def test_a_bad_tracking_plan_is_a_problem_never_a_500(client, make_tenant, db):
    tenant = await make_tenant()
    admin = bearer(tenant.secret_key)
    reader = await create_api_key(db, tenant.tenant_id, "secret", ["profiles:read"])
    async with client() as http:
        r = await http.put("/v1/tracking-plan", headers=admin, json={"events": {"A": {"type": "objct"}}})
        assert "events['A'].type" in problem(r, 400, "invalid_tracking_plan")["detail"]
        r = await http.put("/v1/tracking-plan", headers=admin, json={"mode": "warn"})
        problem(r, 422, "validation_failed")
        r = await http.put("/v1/tracking-plan", headers=admin, content=b"{nope")
        problem(r, 422, "validation_failed")
        problem(await http.get("/v1/tracking-plan", headers=bearer(reader)), 403, "insufficient_scope")
        problem(await http.get("/v1/tracking-plan", headers=basic(tenant.write_key)), 403, "secret_key_required")


async def test_export_then_erase_a_person_by_identifier(client, make_tenant):
    tenant = await make_tenant()
    admin = bearer(tenant.secret_key)
    write = basic(tenant.write_key)
    async with client() as http:
        r = await http.post("/v1/identify", headers=write,
                            json={"userId": "rachel", "traits": {"email": "Rachel@Example.com", "name": "Rachel"}})
        assert r.status_code == 200, r.text
        await http.post("/v1/track", headers=write, json={"userId": "rachel", "event": "Product Viewed"})

        r = await http.get("/v1/profiles/email:rachel@example.com/export", headers=admin)
        assert r.status_code == 200, r.text
        doc = r.json()
        profile_id = doc["profile_id"]
        assert {(i["type"], i["value"]) for i in doc["identifiers"]} == {("user_id", "rachel"),
                                                                          ("email", "rachel@example.com")}
        assert doc["event_count"] == 2 and doc["profile"]["traits"]["name"] == "Rachel"

        key = {**admin, "Idempotency-Key": "erase-rachel-1"}
        r = await http.delete("/v1/profiles/user_id:rachel", headers=key)
        assert r.status_code == 200, r.text
        assert r.json() == {"erased": True, "profile_id": profile_id}
        # retries, by identifier (gone now) or by id, say the same
        r = await http.delete("/v1/profiles/user_id:rachel", headers=key)
        assert r.json() == {"erased": True, "profile_id": None}
        r = await http.delete(f"/v1/profiles/{profile_id}", headers=admin)
        assert r.json() == {"erased": True, "profile_id": profile_id}

        problem(await http.get(f"/v1/profiles/{profile_id}", headers=admin), 404, "profile_erased")
        problem(await http.get("/v1/profiles/email:rachel@example.com/export", headers=admin), 404, "profile_erased")
        r = await http.post("/v1/track", headers=write, json={"userId": "rachel", "event": "Product Viewed"})
        problem(r, 400, "erased_identifier")


async def test_privacy_routes_refuse_unknown_people_and_weak_keys(client, make_tenant, db):
    tenant = await make_tenant()
    admin = bearer(tenant.secret_key)
    reader = bearer(await create_api_key(db, tenant.tenant_id, "secret", ["profiles:read"]))
    async with client() as http:
        problem(await http.get("/v1/profiles/user_id:nobody/export", headers=admin), 404, "profile_not_found")
        problem(await http.delete("/v1/profiles/user_id:nobody", headers=admin), 404, "profile_not_found")
        problem(await http.delete("/v1/profiles/not-an-identifier", headers=admin), 400, "invalid_identifier")
        problem(await http.delete("/v1/profiles/user_id:nobody", headers=reader), 403, "insufficient_scope")


async def test_bulk_import_over_http_with_an_imports_key(client, make_tenant, db):
    tenant = await make_tenant()
    importer = bearer(await create_api_key(db, tenant.tenant_id, "secret", ["imports:write"]))
    columns = ["user_id", "Email", "Phone", "Name"]
    async with client() as http:
        r = await http.post("/v1/imports", headers=importer,
                            json={"import_id": "crm-1", "name": "crm.csv", "source": "crm", "columns": columns})
        assert r.status_code == 200, r.text
        assert (r.json()["last_row"], r.json()["columns"]) == (0, columns)

        rows = [{"number": 1, "cells": ["u-1", "ann@example.com", "13812345678", "Ann"]},
                {"number": 2, "cells": ["", "bad-email", "", "Bob"]},
                {"number": 3, "cells": ["", "ANN@example.com", "", "Ann again"]},
                {"number": 4, "cells": ["", "", "", "Nobody"]}]
        r = await http.post("/v1/imports/crm-1/rows", headers=importer, json={"rows": rows})
        assert r.status_code == 200, r.text
        body = r.json()
        assert {k: body["report"][k] for k in ("last_row", "accepted", "merged", "rejected")} == {
            "last_row": 4, "accepted": 2, "merged": 1, "rejected": 2}
        assert body["report"]["rejected_by_code"] == {"invalid_email": 1, "no_identifier": 1}
        assert [(x["number"], x["code"]) for x in body["rejected"]] == [(2, "invalid_email"), (4, "no_identifier")]

        # resuming: same id and columns give the report back; rows already stored are skipped
        r = await http.post("/v1/imports", headers=importer, json={"import_id": "crm-1", "source": "crm",
                                                                   "columns": columns})
        assert r.json()["last_row"] == 4
        r = await http.post("/v1/imports/crm-1/rows", headers=importer, json={"rows": rows})
        assert r.json()["report"]["accepted"] == 2 and r.json()["rejected"] == []
        r = await http.get("/v1/imports/crm-1", headers=importer)
        assert r.status_code == 200 and r.json()["accepted"] == 2

        r = await http.get("/v1/profiles/email:ann@example.com", headers=bearer(tenant.secret_key))
        assert r.json()["traits"]["Name"] == "Ann again"


async def test_bulk_import_problems(client, make_tenant, db):
    tenant = await make_tenant()
    admin = bearer(tenant.secret_key)
    reader = bearer(await create_api_key(db, tenant.tenant_id, "secret", ["profiles:read"]))
    start = {"import_id": "pos-1", "source": "pos", "columns": ["pos_card", "Store"]}
    async with client() as http:
        problem(await http.post("/v1/imports", headers=reader, json=start), 403, "insufficient_scope")
        problem(await http.post("/v1/imports", headers=admin, json={**start, "source": "erp"}), 422,
                "validation_failed")
        problem(await http.post("/v1/imports", headers=admin, json={**start, "columns": ["Store"]}), 400,
                "no_identifier_column")
        problem(await http.post("/v1/imports", headers=admin, json={**start, "import_id": "has space"}), 400,
                "invalid_import_id")
        assert (await http.post("/v1/imports", headers=admin, json=start)).status_code == 200
        problem(await http.post("/v1/imports", headers=admin, json={**start, "columns": ["pos_card"]}), 409,
                "import_mismatch")
        problem(await http.get("/v1/imports/nope", headers=admin), 404, "import_not_found")
        problem(await http.post("/v1/imports/nope/rows", headers=admin, json={"rows": [{"number": 1, "cells": []}]}),
                404, "import_not_found")
        problem(await http.post("/v1/imports/pos-1/rows", headers=admin, json={"rows": [{"number": 0, "cells": []}]}),
                422, "validation_failed")
        problem(await http.post("/v1/imports/pos-1/rows", headers=admin,
                                json={"rows": [{"number": 2, "cells": []}, {"number": 1, "cells": []}]}),
                400, "invalid_row_number")
        # a generated id when none is given
        r = await http.post("/v1/imports", headers=admin, json={"source": "pos", "columns": ["pos_card"]})
        assert r.status_code == 200 and r.json()["import_id"]
