"""The loyalty, coupon and reward routes over HTTP against a REAL loyalty service (in-process gRPC on
a free port, its own migrated database, real Valkey, a ManualClock): programs and their report,
members, earn/spend/adjust/reverse and the statement, coupons, rewards. Every test makes its own
tenant, so they share one loyalty service."""

from __future__ import annotations

import uuid

import httpx
import pytest

from gateway.testing import PROBLEM, assert_problem, bearer, scoped_key

PROGRAM = {
    "name": "Runners Club",
    "currency": "CNY",
    "tiers": [
        {"code": "normal", "name": "Normal", "rank": 0},
        {"code": "silver", "name": "Silver", "rank": 1, "threshold_points": 1000},
        {"code": "gold", "name": "Gold", "rank": 2, "threshold_points": 6000, "discount_percent": 5,
         "free_shipping": True, "benefits": [{"code": "birthday_gift", "name": "Birthday gift",
                                              "config": {"sku": "gift-1"}}]},
    ],
    "earn_rules": [
        {"name": "100 per order", "trigger": "order", "points": 100},
        {"name": "1 per yuan", "trigger": "order", "points_per_unit": 1, "unit_minor": 100},
    ],
    "pending_days": 14,
    "point_value_minor": 1,
}





def new_profile() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def client(loyalty_client) -> httpx.AsyncClient:
    return loyalty_client


@pytest.fixture
async def tenant(make_tenant):
    return await make_tenant()


@pytest.fixture
def admin(tenant) -> dict[str, str]:
    return bearer(tenant.secret_key)


async def create_program(client, headers, **changes) -> dict:
    r = await client.post("/v1/loyalty/programs", headers=headers, json={**PROGRAM, **changes})
    assert r.status_code == 201, r.text
    return r.json()


async def enrolled(client, headers) -> tuple[str, str]:
    """A new program with one new member: (program_id, profile_id)."""
    program = await create_program(client, headers)
    profile = new_profile()
    r = await client.post(f"/v1/loyalty/programs/{program['id']}/members", headers=headers,
                          json={"profile_id": profile, "source": "web"})
    assert r.status_code == 201, r.text
    return program["id"], profile


# ---- programs ------------------------------------------------------------------------------------


async def test_program_create_read_list_replace_and_a_retried_create_makes_one(client, tenant, db):
    admin = bearer(tenant.secret_key)
    writer = await scoped_key(db, tenant, "loyalty:write")
    reader = await scoped_key(db, tenant, "loyalty:read")

    first = await client.post("/v1/loyalty/programs", headers={**writer, "Idempotency-Key": "p-1"}, json=PROGRAM)
    retry = await client.post("/v1/loyalty/programs", headers={**writer, "Idempotency-Key": "p-1"}, json=PROGRAM)

    assert first.status_code == 201, first.text
    program = first.json()
    assert first.headers["location"] == f"/v1/loyalty/programs/{program['id']}"
    assert retry.json()["id"] == program["id"]
    assert [t["code"] for t in program["tiers"]] == ["normal", "silver", "gold"]
    gold = program["tiers"][2]
    assert (gold["threshold_points"], gold["discount_percent"], gold["free_shipping"]) == (6000, 5, True)
    assert gold["benefits"] == [{"code": "birthday_gift", "name": "Birthday gift", "description": "",
                                 "config": {"sku": "gift-1"}}]
    assert [r["trigger"] for r in program["earn_rules"]] == ["order", "order"]
    assert all(r["id"] for r in program["earn_rules"])
    assert (program["expiry_mode"], program["tier_basis"], program["downgrade_policy"]) == (
        "after_days", "points", "period_end")
    assert program["created_at"].endswith("Z") or "+00:00" in program["created_at"]

    listed = await client.get("/v1/loyalty/programs", headers=reader)
    assert listed.status_code == 200, listed.text
    assert [p["id"] for p in listed.json()["programs"]] == [program["id"]]  # the retry created nothing
    got = await client.get(f"/v1/loyalty/programs/{program['id']}", headers=reader)
    assert got.json() == program

    replaced = await client.put(f"/v1/loyalty/programs/{program['id']}", headers=admin, json={
        **PROGRAM, "name": "Runners Club+", "expiry_mode": "end_of_year", "tier_basis": "spend",
        "tiers": [{"code": "normal", "name": "Normal", "rank": 0},
                  {"code": "vip", "name": "VIP", "rank": 1, "threshold_spend_minor": 500000}]})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["id"] == program["id"]
    assert (replaced.json()["name"], replaced.json()["expiry_mode"], replaced.json()["tier_basis"]) == (
        "Runners Club+", "end_of_year", "spend")
    again = (await client.get(f"/v1/loyalty/programs/{program['id']}", headers=reader)).json()
    assert [t["code"] for t in again["tiers"]] == ["normal", "vip"]


async def test_program_errors_are_problems(client, tenant, db):
    admin = bearer(tenant.secret_key)
    reader = await scoped_key(db, tenant, "loyalty:read")
    profiles_only = await scoped_key(db, tenant, "profiles:read", "profiles:write")

    no_key = await client.get("/v1/loyalty/programs")
    write_key = await client.get("/v1/loyalty/programs", headers=bearer(tenant.write_key))
    not_reader = await client.get("/v1/loyalty/programs", headers=profiles_only)
    read_only = await client.post("/v1/loyalty/programs", headers=reader, json=PROGRAM)
    read_only_put = await client.put(f"/v1/loyalty/programs/{uuid.uuid4()}", headers=reader, json=PROGRAM)
    unknown = await client.get(f"/v1/loyalty/programs/{uuid.uuid4()}", headers=admin)
    not_uuid = await client.get("/v1/loyalty/programs/not-a-uuid", headers=admin)
    bad_currency = await client.post("/v1/loyalty/programs", headers=admin, json={**PROGRAM, "currency": "yuan"})
    unknown_field = await client.post("/v1/loyalty/programs", headers=admin, json={**PROGRAM, "colour": "red"})
    bad_enum = await client.post("/v1/loyalty/programs", headers=admin, json={**PROGRAM, "expiry_mode": "later"})
    no_name = await client.post("/v1/loyalty/programs", headers=admin, json={**PROGRAM, "name": ""})
    nul = await client.post("/v1/loyalty/programs", headers=admin, json={**PROGRAM, "name": "a\x00b"})
    huge = await client.post("/v1/loyalty/programs", headers=admin, json={**PROGRAM, "tiers": [
        {"code": "normal", "name": "Normal", "rank": 0, "threshold_points": 2**70}]})
    nan = await client.post(  # Python's json (and httpx) writes NaN; the gateway must refuse it, not crash
        "/v1/loyalty/programs", headers={**admin, "Content-Type": "application/json"},
        content=b'{"name": "x", "currency": "CNY", "tiers": [{"code": "a", "name": "A", "rank": 0,'
                b' "points_multiplier": NaN}]}')
    bad_json = await client.post("/v1/loyalty/programs", headers={**admin, "Content-Type": "application/json"},
                                 content=b"{nope")
    rule_window = await client.post("/v1/loyalty/programs", headers=admin, json={**PROGRAM, "earn_rules": [
        {"name": "x", "trigger": "order", "points": 1, "valid_from": "2026-12-01T00:00:00Z",
         "valid_until": "2026-11-01T00:00:00Z"}]})
    same_rank = await client.post("/v1/loyalty/programs", headers=admin, json={**PROGRAM, "tiers": [
        {"code": "normal", "name": "Normal", "rank": 0}, {"code": "a", "name": "A", "rank": 1, "threshold_points": 5},
        {"code": "b", "name": "B", "rank": 1, "threshold_points": 9}]})

    assert_problem(no_key, 401, "missing_api_key")
    assert_problem(write_key, 403, "secret_key_required")
    assert assert_problem(not_reader, 403, "insufficient_scope")["required_scope"] == "loyalty:read"
    assert assert_problem(read_only, 403, "insufficient_scope")["required_scope"] == "loyalty:write"
    assert_problem(read_only_put, 403, "insufficient_scope")
    assert_problem(unknown, 404, "program_not_found")
    assert_problem(not_uuid, 400, "invalid_request")
    assert assert_problem(bad_currency, 422, "validation_failed")["errors"][0]["pointer"] == "#/currency"
    assert_problem(unknown_field, 422, "validation_failed")
    assert assert_problem(bad_enum, 422, "validation_failed")["errors"][0]["pointer"] == "#/expiry_mode"
    assert_problem(no_name, 422, "validation_failed")
    assert_problem(nul, 422, "validation_failed")
    assert_problem(huge, 422, "validation_failed")
    assert_problem(nan, 422, "validation_failed")
    assert_problem(bad_json, 422, "validation_failed")
    assert_problem(rule_window, 422, "validation_failed")
    assert_problem(same_rank, 400, "invalid_program")  # the service's own check, passed through
    # nothing was created by the refused calls
    assert (await client.get("/v1/loyalty/programs", headers=admin)).json()["programs"] == []


# ---- members -------------------------------------------------------------------------------------


async def test_enrol_is_201_then_200_and_the_member_shows_tier_distance_and_benefits(client, admin, tenant, db):
    program = await create_program(client, admin)
    profile = new_profile()
    path = f"/v1/loyalty/programs/{program['id']}/members"

    created = await client.post(path, headers={**admin, "Idempotency-Key": "e-1"},
                                json={"profile_id": profile, "source": "exit_intent_popup"})
    existing = await client.post(path, headers=admin, json={"profile_id": profile, "source": "pos"})

    assert created.status_code == 201, created.text
    member = created.json()
    assert existing.status_code == 200, existing.text
    assert existing.json()["member_number"] == member["member_number"]
    assert (member["profile_id"], member["program_id"], member["status"]) == (profile, program["id"], "active")
    assert member["member_number"]
    assert member["tier"]["code"] == "normal" and member["tier"]["rank"] == 0
    assert member["next_tier"] == {"code": "silver", "name": "Silver", "threshold": 1000, "to_go": 1000}
    assert member["balance"]["available"] == 0 and member["balance"]["pending"] == 0

    reader = await scoped_key(db, tenant, "loyalty:read")
    got = await client.get(f"/v1/loyalty/members/{profile}", headers=reader)  # the tenant's only program
    assert got.status_code == 200, got.text
    assert got.json()["member_number"] == member["member_number"]
    by_program = await client.get(f"/v1/loyalty/members/{profile}", params={"program_id": program["id"]},
                                  headers=reader)
    assert by_program.json()["profile_id"] == profile


async def test_member_errors_are_problems(client, admin, tenant, db):
    program_id, profile = await enrolled(client, admin)
    reader = await scoped_key(db, tenant, "loyalty:read")
    path = f"/v1/loyalty/programs/{program_id}/members"

    not_member = await client.get(f"/v1/loyalty/members/{new_profile()}", headers=admin)
    unknown_program = await client.post(f"/v1/loyalty/programs/{uuid.uuid4()}/members", headers=admin,
                                        json={"profile_id": new_profile()})
    bad_profile = await client.post(path, headers=admin, json={"profile_id": "user_id:42"})
    missing_profile = await client.post(path, headers=admin, json={"source": "web"})
    read_only = await client.post(path, headers=reader, json={"profile_id": new_profile()})
    bad_path = await client.get("/v1/loyalty/members/rachel", headers=admin)
    bad_query = await client.get(f"/v1/loyalty/members/{profile}", params={"program_id": "x"}, headers=admin)
    await create_program(client, admin)  # a second program: program_id is now needed
    ambiguous = await client.get(f"/v1/loyalty/members/{profile}", headers=admin)

    assert_problem(not_member, 404, "not_a_member")
    assert_problem(unknown_program, 404, "program_not_found")
    assert assert_problem(bad_profile, 422, "validation_failed")["errors"][0]["pointer"] == "#/profile_id"
    assert_problem(missing_profile, 422, "validation_failed")
    assert_problem(read_only, 403, "insufficient_scope")
    assert_problem(bad_path, 400, "invalid_identifier")  # neither a profile id nor type:value
    assert_problem(bad_query, 400, "invalid_request")
    assert_problem(ambiguous, 400, "program_id_required")


# ---- points --------------------------------------------------------------------------------------


async def test_earn_with_the_same_key_twice_credits_once(client, admin):
    program_id, profile = await enrolled(client, admin)
    body = {"program_id": program_id, "points": 1500, "reason": "signup", "qualifying": True}
    headers = {**admin, "Idempotency-Key": "signup-bonus"}

    first = await client.post(f"/v1/loyalty/members/{profile}/earn", headers=headers, json=body)
    retry = await client.post(f"/v1/loyalty/members/{profile}/earn", headers=headers, json=body)

    assert first.status_code == 200, first.text
    result = first.json()
    [entry] = result["entries"]
    assert (entry["kind"], entry["points"], entry["reason"], entry["balance_after"]) == ("earn", 1500, "signup", 1500)
    assert entry["qualifying_points"] == 1500
    assert result["member"]["balance"]["available"] == 1500
    assert result["member"]["tier"]["code"] == "silver"  # 1500 qualifying points >= 1000
    assert result["member"]["next_tier"] == {"code": "gold", "name": "Gold", "threshold": 6000, "to_go": 4500}
    assert retry.status_code == 200 and retry.json() == result
    member = (await client.get(f"/v1/loyalty/members/{profile}", headers=admin)).json()
    assert member["balance"]["available"] == 1500  # not 3000
    ledger = (await client.get(f"/v1/loyalty/members/{profile}/ledger", headers=admin)).json()
    assert [e["id"] for e in ledger["entries"]] == [entry["id"]]


async def test_order_earns_pending_points_spend_debits_and_the_ledger_pages(client, admin, tenant, db):
    program_id, profile = await enrolled(client, admin)
    writer = await scoped_key(db, tenant, "loyalty:write", "loyalty:read")
    base = f"/v1/loyalty/members/{profile}"
    order = {"order_id": "o-1", "total_minor": 25000, "currency": "CNY", "channel": "web",
             "lines": [{"item_id": "pegasus-40", "category": "shoes", "quantity": 1, "amount_minor": 25000}],
             "ordered_at": "2026-11-01T08:00:00+08:00"}

    earned = await client.post(f"{base}/earn", headers=writer, json={"program_id": program_id, "order": order})
    assert earned.status_code == 200, earned.text
    entries = earned.json()["entries"]
    assert sum(e["points"] for e in entries) == 100 + 250  # 100 per order + 1 per yuan
    assert all(e["order_id"] == "o-1" and e["available_at"] for e in entries)
    assert earned.json()["member"]["balance"]["pending"] == 350
    assert earned.json()["member"]["balance"]["available"] == 0

    gift = await client.post(f"{base}/earn", headers=writer,
                             json={"program_id": program_id, "points": 800, "reason": "birthday"})
    spent = await client.post(f"{base}/spend", headers={**writer, "Idempotency-Key": "pay-1"},
                              json={"program_id": program_id, "points": 300, "reason": "order_payment",
                                    "order_id": "o-2"})
    spent_again = await client.post(f"{base}/spend", headers={**writer, "Idempotency-Key": "pay-1"},
                                     json={"program_id": program_id, "points": 300, "reason": "order_payment",
                                           "order_id": "o-2"})
    too_much = await client.post(f"{base}/spend", headers=writer,
                                 json={"program_id": program_id, "points": 10_000, "reason": "order_payment"})

    assert gift.status_code == 200, gift.text
    assert spent.status_code == 200, spent.text
    [debit] = spent.json()["entries"]
    assert (debit["kind"], debit["points"], debit["balance_after"], debit["order_id"]) == ("spend", -300, 500, "o-2")
    assert debit["consumed"] == [{"lot_id": gift.json()["entries"][0]["id"], "points": 300}]
    assert spent_again.json() == spent.json()
    assert_problem(too_much, 409, "insufficient_points")
    member = (await client.get(base, headers=writer)).json()
    assert (member["balance"]["available"], member["balance"]["pending"]) == (500, 350)
    assert member["balance"]["lifetime_spent"] == 300

    # the statement, newest first, two per page
    seen, cursor = [], None
    while True:
        params = {"program_id": program_id, "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = await client.get(f"{base}/ledger", params=params, headers=writer)
        assert page.status_code == 200, page.text
        seen += page.json()["entries"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(entries) + 2
    assert seen[0]["id"] == debit["id"]
    assert {e["kind"] for e in seen} == {"earn", "spend"}
    bad_cursor = await client.get(f"{base}/ledger", params={"cursor": "garbage"}, headers=writer)
    assert_problem(bad_cursor, 400, "invalid_page_token")
    bad_limit = await client.get(f"{base}/ledger", params={"limit": 0}, headers=writer)
    assert_problem(bad_limit, 400, "invalid_request")


async def test_adjust_records_actor_and_reason_and_reverse_takes_back_an_order(client, admin):
    program_id, profile = await enrolled(client, admin)
    base = f"/v1/loyalty/members/{profile}"

    credit = await client.post(f"{base}/adjust", headers={**admin, "Idempotency-Key": "adj-1"}, json={
        "program_id": program_id, "points": 400, "actor": "ops@example.com", "reason": "goodwill"})
    credit_retry = await client.post(f"{base}/adjust", headers={**admin, "Idempotency-Key": "adj-1"}, json={
        "program_id": program_id, "points": 400, "actor": "ops@example.com", "reason": "goodwill"})
    overdraw = await client.post(f"{base}/adjust", headers=admin, json={
        "program_id": program_id, "points": -1000, "actor": "ops@example.com", "reason": "fraud"})

    assert credit.status_code == 200, credit.text
    [entry] = credit.json()["entries"]
    assert (entry["kind"], entry["points"], entry["actor"], entry["reason"]) == (
        "adjustment", 400, "ops@example.com", "goodwill")
    assert credit_retry.json() == credit.json()
    assert overdraw.status_code == 409, overdraw.text
    assert overdraw.headers["content-type"] == PROBLEM

    order = {"order_id": "o-9", "total_minor": 10000, "currency": "CNY"}
    earned = await client.post(f"{base}/earn", headers=admin, json={"program_id": program_id, "order": order})
    assert earned.status_code == 200, earned.text
    reversed_ = await client.post(f"{base}/reverse", headers={**admin, "Idempotency-Key": "ret-1"}, json={
        "program_id": program_id, "order_id": "o-9", "reason": "return"})
    reversed_retry = await client.post(f"{base}/reverse", headers={**admin, "Idempotency-Key": "ret-1"}, json={
        "program_id": program_id, "order_id": "o-9", "reason": "return"})
    unknown_order = await client.post(f"{base}/reverse", headers=admin, json={
        "program_id": program_id, "order_id": "o-nope"})

    assert reversed_.status_code == 200, reversed_.text
    assert {e["kind"] for e in reversed_.json()["entries"]} == {"reversal"}
    assert sum(e["points"] for e in reversed_.json()["entries"]) == -200  # 100 per order + 100 per amount
    assert reversed_retry.json() == reversed_.json()
    member = (await client.get(base, headers=admin)).json()
    assert (member["balance"]["available"], member["balance"]["pending"]) == (400, 0)
    assert_problem(unknown_order, 409, "order_not_found")


async def test_points_bodies_are_validated(client, admin, tenant, db):
    program_id, profile = await enrolled(client, admin)
    reader = await scoped_key(db, tenant, "loyalty:read")
    base = f"/v1/loyalty/members/{profile}"
    order = {"order_id": "o-1", "total_minor": 100, "currency": "CNY"}

    cases = {
        "earn": [
            {"program_id": program_id},  # neither points nor order
            {"program_id": program_id, "points": 5, "reason": "x", "order": order},  # both
            {"program_id": program_id, "points": 5},  # no reason
            {"program_id": program_id, "points": 0, "reason": "x"},
            {"program_id": program_id, "points": -5, "reason": "x"},
            {"program_id": program_id, "points": 10**20, "reason": "x"},
            {"program_id": "not-a-uuid", "points": 5, "reason": "x"},
            {"program_id": program_id, "points": 5, "reason": "x", "available_at": "2026-11-11T10:00:00"},
            {"program_id": program_id, "order": {**order, "currency": "cny"}},
            {"program_id": program_id, "order": {**order, "total_minor": -1}},
            {"program_id": program_id, "order": {**order, "lines": [{"item_id": "a", "amount_minor": "lots"}]}},
        ],
        "spend": [
            {"program_id": program_id, "points": 5},
            {"program_id": program_id, "points": 0, "reason": "x"},
            {"program_id": program_id, "points": "five", "reason": "x"},
        ],
        "adjust": [
            {"program_id": program_id, "points": 0, "actor": "a", "reason": "b"},
            {"program_id": program_id, "points": 5, "reason": "b"},
            {"program_id": program_id, "points": 5, "actor": "a"},
        ],
        "reverse": [
            {"program_id": program_id},
            {"program_id": program_id, "order_id": "o-1", "refund_minor": 100},  # amount without currency
        ],
    }
    for action, bodies in cases.items():
        for body in bodies:
            r = await client.post(f"{base}/{action}", headers=admin, json=body)
            assert_problem(r, 422, "validation_failed")
        denied = await client.post(f"{base}/{action}", headers=reader, json=bodies[0])
        assert assert_problem(denied, 403, "insufficient_scope")["required_scope"] == "loyalty:write"
        anonymous = await client.post(f"{base}/{action}", json=bodies[0])
        assert_problem(anonymous, 401, "missing_api_key")
    not_member = await client.post(f"/v1/loyalty/members/{new_profile()}/earn", headers=admin,
                                   json={"program_id": program_id, "points": 5, "reason": "x"})
    assert_problem(not_member, 404, "not_a_member")
    # nothing was written by the refused calls
    ledger = (await client.get(f"{base}/ledger", headers=admin)).json()
    assert ledger["entries"] == []


async def test_program_report_counts_members_points_and_liability(client, admin, tenant, db):
    program_id, profile = await enrolled(client, admin)
    reader = await scoped_key(db, tenant, "loyalty:read")
    earned = await client.post(f"/v1/loyalty/members/{profile}/earn", headers=admin,
                               json={"program_id": program_id, "points": 700, "reason": "signup"})
    assert earned.status_code == 200, earned.text

    path = f"/v1/loyalty/programs/{program_id}/report"
    report = await client.get(path, headers=reader, params={
        "from": "2026-10-01T00:00:00Z", "to": "2026-12-01T00:00:00Z", "period": "month"})
    assert report.status_code == 200, report.text
    body = report.json()
    assert (body["program_id"], body["members"], body["outstanding_points"]) == (program_id, 1, 700)
    assert (body["liability_minor"], body["currency"]) == (700, "CNY")  # point value 1 fen
    assert {t["tier_code"]: t["members"] for t in body["tiers"]}["normal"] == 1
    assert sum(p["earned"] for p in body["periods"]) == 700
    assert sum(p["members_enrolled"] for p in body["periods"]) == 1
    default = await client.get(path, headers=reader)
    assert default.status_code == 200 and default.json()["outstanding_points"] == 700

    bad_period = await client.get(path, headers=reader, params={"period": "year"})
    naive = await client.get(path, headers=reader, params={"from": "2026-10-01T00:00:00"})
    backwards = await client.get(path, headers=reader, params={
        "from": "2026-12-01T00:00:00Z", "to": "2026-10-01T00:00:00Z"})
    unknown = await client.get(f"/v1/loyalty/programs/{uuid.uuid4()}/report", headers=reader)
    assert_problem(bad_period, 400, "invalid_request")
    assert_problem(naive, 400, "invalid_request")
    assert_problem(backwards, 400, "invalid_range")
    assert_problem(unknown, 404, "program_not_found")


# ---- coupons ------------------------------------------------------------------------------------

CAMPAIGN = {
    "name": "Welcome 10% off",
    "description": "for new members",
    "discount_type": "percent_off",
    "percent_off": 10,
    "min_order_minor": 20000,
    "currency": "CNY",
    "valid_from": "2026-10-01T00:00:00Z",
    "valid_until": "2027-10-01T00:00:00Z",
    "validity_days": 30,
    "per_profile_limit": 1,
    "code_prefix": "WELCOME10-",
}


async def create_campaign(client, headers, **changes) -> dict:
    r = await client.post("/v1/coupon-campaigns", headers=headers, json={**CAMPAIGN, **changes})
    assert r.status_code == 201, r.text
    return r.json()


def cart(order_id: str, total: int) -> dict:
    return {"order_id": order_id, "total_minor": total, "currency": "CNY",
            "lines": [{"item_id": "pegasus-40", "category": "shoes", "quantity": 1, "amount_minor": total}]}


async def test_campaign_create_read_list_replace_and_a_retried_create_makes_one(client, tenant, db):
    writer = await scoped_key(db, tenant, "loyalty:write")
    reader = await scoped_key(db, tenant, "loyalty:read")

    first = await client.post("/v1/coupon-campaigns", headers={**writer, "Idempotency-Key": "c-1"}, json=CAMPAIGN)
    retry = await client.post("/v1/coupon-campaigns", headers={**writer, "Idempotency-Key": "c-1"}, json=CAMPAIGN)
    assert first.status_code == 201, first.text
    campaign = first.json()
    assert first.headers["location"] == f"/v1/coupon-campaigns/{campaign['id']}"
    assert retry.json()["id"] == campaign["id"]
    assert (campaign["discount_type"], campaign["percent_off"], campaign["status"], campaign["code_source"]) == (
        "percent_off", 10, "active", "generated")
    assert (campaign["issued_count"], campaign["redeemed_count"], campaign["currency"]) == (0, 0, "CNY")
    assert campaign["valid_until"].startswith("2027-10-01T00:00:00")
    other = await create_campaign(client, writer, name="Free shipping", discount_type="free_shipping",
                                  percent_off=0, code_prefix="SHIP-")

    page1 = await client.get("/v1/coupon-campaigns", params={"limit": 1}, headers=reader)
    assert page1.status_code == 200, page1.text
    page2 = await client.get("/v1/coupon-campaigns", params={"limit": 1, "cursor": page1.json()["next_cursor"]},
                             headers=reader)
    listed = [c["id"] for c in page1.json()["campaigns"] + page2.json()["campaigns"]]
    assert sorted(listed) == sorted([campaign["id"], other["id"]])  # one campaign for the retried create
    assert page2.json()["next_cursor"] is None
    got = await client.get(f"/v1/coupon-campaigns/{campaign['id']}", headers=reader)
    assert got.json() == campaign

    paused = await client.put(f"/v1/coupon-campaigns/{campaign['id']}", headers=writer,
                              json={**CAMPAIGN, "name": "Welcome (paused)", "status": "paused"})
    assert paused.status_code == 200, paused.text
    assert (paused.json()["id"], paused.json()["name"], paused.json()["status"]) == (
        campaign["id"], "Welcome (paused)", "paused")


async def test_coupon_issue_validate_reserve_release_redeem_and_wallet(client, tenant, db):
    writer = await scoped_key(db, tenant, "loyalty:write", "loyalty:read")
    campaign = await create_campaign(client, writer)
    rachel, stranger = new_profile(), new_profile()
    issue_path = f"/v1/coupon-campaigns/{campaign['id']}/issue"

    issued = await client.post(issue_path, headers={**writer, "Idempotency-Key": "welcome-rachel"},
                               json={"profile_id": rachel, "source": "popup"})
    issued_again = await client.post(issue_path, headers={**writer, "Idempotency-Key": "welcome-rachel"},
                                     json={"profile_id": rachel, "source": "popup"})
    over_limit = await client.post(issue_path, headers=writer, json={"profile_id": rachel})

    assert issued.status_code == 201, issued.text
    coupon = issued.json()
    code = coupon["code"]
    assert issued.headers["location"] == f"/v1/coupons/{code}"
    assert code.startswith("WELCOME10-")
    assert (coupon["state"], coupon["profile_id"], coupon["campaign_id"], coupon["source"]) == (
        "issued", rachel, campaign["id"], "popup")
    assert coupon["expires_at"].startswith("2026-12-01T09:00:00")  # issued at the clock's 2026-11-01 09:00 + 30 d
    assert coupon["reserved_order_id"] is None and coupon["redeemed_at"] is None
    assert issued_again.json()["code"] == code
    assert_problem(over_limit, 429, "profile_limit_reached")
    counters = (await client.get(f"/v1/coupon-campaigns/{campaign['id']}", headers=writer)).json()
    assert counters["issued_count"] == 1

    got = await client.get(f"/v1/coupons/{code.lower()}", headers=writer)  # codes are case-insensitive
    assert got.status_code == 200 and got.json() == coupon

    async def validate(profile: str, order: dict) -> dict:
        r = await client.post(f"/v1/coupons/{code}/validate", headers=writer,
                              json={"profile_id": profile, "order": order})
        assert r.status_code == 200, r.text
        return r.json()

    ok = await validate(rachel, cart("o-1", 25000))
    assert (ok["valid"], ok["reason"], ok["discount_minor"], ok["currency"]) == (True, None, 2500, "CNY")
    assert ok["coupon"]["code"] == code
    small = await validate(rachel, cart("o-1", 5000))
    assert (small["valid"], small["reason"], small["discount_minor"]) == (False, "min_order_not_met", 0)
    foreign = await validate(stranger, cart("o-1", 25000))
    assert (foreign["valid"], foreign["reason"], foreign["coupon"]) == (False, "not_owner", None)

    reserved = await client.post(f"/v1/coupons/{code}/reserve", headers=writer,
                                 json={"profile_id": rachel, "order_id": "o-1", "hold_seconds": 600})
    assert reserved.status_code == 200, reserved.text
    assert (reserved.json()["state"], reserved.json()["reserved_order_id"]) == ("reserved", "o-1")
    assert reserved.json()["reserved_until"].startswith("2026-11-01T09:10:00")
    taken = await client.post(f"/v1/coupons/{code}/reserve", headers=writer,
                              json={"profile_id": rachel, "order_id": "o-2"})
    assert_problem(taken, 409, "reserved")
    released = await client.post(f"/v1/coupons/{code}/release", headers=writer, json={"order_id": "o-1"})
    assert released.status_code == 200, released.text
    assert (released.json()["state"], released.json()["reserved_order_id"]) == ("issued", None)

    again = await client.post(f"/v1/coupons/{code}/reserve", headers=writer,
                              json={"profile_id": rachel, "order_id": "o-2"})
    assert again.status_code == 200, again.text
    body = {"profile_id": rachel, "order_id": "o-2", "discount_minor": 2500, "currency": "CNY"}
    redeemed = await client.post(f"/v1/coupons/{code}/redeem", headers={**writer, "Idempotency-Key": "pay-o-2"},
                                 json=body)
    redeemed_again = await client.post(f"/v1/coupons/{code}/redeem",
                                       headers={**writer, "Idempotency-Key": "pay-o-2"}, json=body)
    assert redeemed.status_code == 200, redeemed.text
    assert (redeemed.json()["state"], redeemed.json()["redeemed_order_id"]) == ("redeemed", "o-2")
    assert redeemed.json()["redeemed_at"] is not None
    assert redeemed_again.status_code == 200 and redeemed_again.json() == redeemed.json()
    used = await validate(rachel, cart("o-3", 25000))
    assert (used["valid"], used["reason"]) == (False, "redeemed")
    counters = (await client.get(f"/v1/coupon-campaigns/{campaign['id']}", headers=writer)).json()
    assert (counters["issued_count"], counters["redeemed_count"]) == (1, 1)  # the retry redeemed nothing more

    # the wallet, filtered by state and page by page
    second = await create_campaign(client, writer, name="Ship", discount_type="free_shipping", percent_off=0,
                                   min_order_minor=0, code_prefix="SHIP-")
    r = await client.post(f"/v1/coupon-campaigns/{second['id']}/issue", headers=writer, json={"profile_id": rachel})
    assert r.status_code == 201, r.text
    wallet = f"/v1/loyalty/members/{rachel}/coupons"
    everything = (await client.get(wallet, headers=writer)).json()
    assert {c["code"] for c in everything["coupons"]} == {code, r.json()["code"]}
    only_redeemed = (await client.get(wallet, params={"state": "redeemed"}, headers=writer)).json()
    assert [c["code"] for c in only_redeemed["coupons"]] == [code]
    either = (await client.get(wallet, params=[("state", "redeemed"), ("state", "issued")], headers=writer)).json()
    assert len(either["coupons"]) == 2
    page1 = (await client.get(wallet, params={"limit": 1}, headers=writer)).json()
    page2 = (await client.get(wallet, params={"limit": 1, "cursor": page1["next_cursor"]}, headers=writer)).json()
    assert {page1["coupons"][0]["code"], page2["coupons"][0]["code"]} == {code, r.json()["code"]}
    assert page2["next_cursor"] is None
    assert (await client.get(f"/v1/loyalty/members/{stranger}/coupons", headers=writer)).json()["coupons"] == []


async def test_pool_campaign_takes_uploaded_codes_once(client, admin):
    pool = await create_campaign(client, admin, name="Xmas pool", code_prefix="", code_source="pool",
                                 per_profile_limit=0)
    assert pool["code_source"] == "pool"
    path = f"/v1/coupon-campaigns/{pool['id']}/codes"

    uploaded = await client.post(path, headers={**admin, "Idempotency-Key": "u-1"},
                                 json={"codes": ["XMAS-7KQ2", "XMAS-P9D4", "xmas-7kq2"]})
    retried = await client.post(path, headers={**admin, "Idempotency-Key": "u-1"},
                                json={"codes": ["XMAS-7KQ2", "XMAS-P9D4", "xmas-7kq2"]})
    overlap = await client.post(path, headers=admin, json={"codes": ["XMAS-P9D4", "XMAS-ZZ11"]})

    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json() == {"added": 2, "skipped": 1, "pool_available": 2}
    assert retried.json() == uploaded.json()
    assert overlap.json() == {"added": 1, "skipped": 1, "pool_available": 3}
    issued = await client.post(f"/v1/coupon-campaigns/{pool['id']}/issue", headers=admin,
                               json={"profile_id": new_profile()})
    assert issued.status_code == 201, issued.text
    assert issued.json()["code"] in {"XMAS-7KQ2", "XMAS-P9D4", "XMAS-ZZ11"}
    after = (await client.get(f"/v1/coupon-campaigns/{pool['id']}", headers=admin)).json()
    assert (after["pool_available"], after["issued_count"]) == (2, 1)

    generated = await create_campaign(client, admin, name="Generated")
    not_pool = await client.post(f"/v1/coupon-campaigns/{generated['id']}/codes", headers=admin,
                                 json={"codes": ["ABC-1"]})
    assert_problem(not_pool, 409, "not_a_pool_campaign")


async def test_coupon_errors_are_problems(client, admin, tenant, db):
    campaign = await create_campaign(client, admin)
    reader = await scoped_key(db, tenant, "loyalty:read")
    profiles_only = await scoped_key(db, tenant, "profiles:read")
    owner = new_profile()
    coupon = (await client.post(f"/v1/coupon-campaigns/{campaign['id']}/issue", headers=admin,
                                json={"profile_id": owner})).json()
    code, cid = coupon["code"], campaign["id"]

    # 404 with stable codes
    assert_problem(await client.get("/v1/coupons/NOPE-123", headers=admin), 404, "coupon_not_found")
    assert_problem(await client.get(f"/v1/coupon-campaigns/{uuid.uuid4()}", headers=admin), 404,
                   "campaign_not_found")
    assert_problem(await client.post(f"/v1/coupon-campaigns/{uuid.uuid4()}/issue", headers=admin,
                                     json={"profile_id": owner}), 404, "campaign_not_found")
    assert_problem(await client.post("/v1/coupons/NOPE-123/redeem", headers=admin,
                                     json={"profile_id": owner, "order_id": "o-1"}), 404, "coupon_not_found")
    # someone else's coupon
    stolen = await client.post(f"/v1/coupons/{code}/redeem", headers=admin,
                               json={"profile_id": new_profile(), "order_id": "o-1"})
    assert_problem(stolen, 403, "not_owner")

    # auth
    assert_problem(await client.get("/v1/coupon-campaigns"), 401, "missing_api_key")
    assert_problem(await client.get("/v1/coupon-campaigns", headers=bearer(tenant.write_key)), 403,
                   "secret_key_required")
    assert_problem(await client.get(f"/v1/coupons/{code}", headers=profiles_only), 403, "insufficient_scope")
    writes = [
        ("post", "/v1/coupon-campaigns", CAMPAIGN),
        ("put", f"/v1/coupon-campaigns/{cid}", CAMPAIGN),
        ("post", f"/v1/coupon-campaigns/{cid}/codes", {"codes": ["A-1"]}),
        ("post", f"/v1/coupon-campaigns/{cid}/issue", {"profile_id": owner}),
        ("post", f"/v1/coupons/{code}/reserve", {"profile_id": owner, "order_id": "o-1"}),
        ("post", f"/v1/coupons/{code}/redeem", {"profile_id": owner, "order_id": "o-1"}),
        ("post", f"/v1/coupons/{code}/release", {"order_id": "o-1"}),
        ("post", f"/v1/coupons/{code}/revoke", {"reason": "fraud"}),
    ]
    for method, path, body in writes:
        denied = await client.request(method, path, headers=reader, json=body)
        assert assert_problem(denied, 403, "insufficient_scope")["required_scope"] == "loyalty:write", path
    validate_denied = await client.post(f"/v1/coupons/{code}/validate", headers=profiles_only,
                                        json={"profile_id": owner, "order": cart("o-1", 100)})
    assert assert_problem(validate_denied, 403, "insufficient_scope")["required_scope"] == "loyalty:read"

    # 422 on bad bodies
    bad_campaigns = [
        {**CAMPAIGN, "discount_type": "bogo"},
        {**CAMPAIGN, "percent_off": 0},
        {**CAMPAIGN, "percent_off": 101},
        {**CAMPAIGN, "discount_type": "amount_off", "percent_off": 0},  # no amount
        {**CAMPAIGN, "discount_type": "amount_off", "percent_off": 0, "amount_off_minor": 500, "currency": None,
         "min_order_minor": 0},
        {**CAMPAIGN, "discount_type": "gift", "percent_off": 0},  # no gift item
        {**CAMPAIGN, "valid_until": "2026-01-01T00:00:00Z"},  # before valid_from
        {**CAMPAIGN, "code_prefix": "has space"},
        {**CAMPAIGN, "code_source": "pool"},  # a prefix with a pool
        {**CAMPAIGN, "max_issued": -1},
        {**CAMPAIGN, "valid_from": "2026-10-01"},
    ]
    for body in bad_campaigns:
        assert_problem(await client.post("/v1/coupon-campaigns", headers=admin, json=body), 422, "validation_failed")
    bad_bodies = [
        (f"/v1/coupon-campaigns/{cid}/codes", {"codes": []}),
        (f"/v1/coupon-campaigns/{cid}/codes", {"codes": ["has space"]}),
        (f"/v1/coupon-campaigns/{cid}/codes", {"codes": ["-leading-dash"]}),
        (f"/v1/coupon-campaigns/{cid}/issue", {"profile_id": "rachel"}),
        (f"/v1/coupon-campaigns/{cid}/issue", {}),
        (f"/v1/coupons/{code}/validate", {"profile_id": owner}),
        (f"/v1/coupons/{code}/validate", {"profile_id": owner, "order": {**cart("o-1", 100), "total_minor": -1}}),
        (f"/v1/coupons/{code}/reserve", {"profile_id": owner}),
        (f"/v1/coupons/{code}/reserve", {"profile_id": owner, "order_id": "o-1", "hold_seconds": 10**9}),
        (f"/v1/coupons/{code}/redeem", {"profile_id": owner, "order_id": "o-1", "discount_minor": 100}),
        (f"/v1/coupons/{code}/release", {}),
        (f"/v1/coupons/{code}/release", {"order_id": "o-1", "profile_id": "rachel"}),
        (f"/v1/coupons/{code}/redeem", {"profile_id": owner, "order_id": "o-1", "order": {"order_id": "o-1"}}),
        (f"/v1/coupons/{code}/revoke", {}),
        (f"/v1/coupons/{code}/revoke", {"reason": ""}),
        (f"/v1/coupons/{code}/revoke", {"reason": "x" * 501}),
    ]
    for path, body in bad_bodies:
        assert_problem(await client.post(path, headers=admin, json=body), 422, "validation_failed")
    assert_problem(await client.get("/v1/coupons/has%20space", headers=admin), 400, "invalid_request")
    assert_problem(await client.get(f"/v1/coupon-campaigns/{cid}x", headers=admin), 400, "invalid_request")
    assert_problem(await client.get(f"/v1/loyalty/members/{owner}/coupons", params={"state": "lost"},
                                    headers=admin), 400, "invalid_request")
    assert_problem(await client.get(f"/v1/loyalty/members/{owner}/coupons", params={"limit": 501},
                                    headers=admin), 400, "invalid_request")
    # none of the refused calls changed the coupon
    assert (await client.get(f"/v1/coupons/{code}", headers=admin)).json() == coupon


async def test_coupon_revoke_owner_only_release_priced_redeem_and_what_validate_says(client, tenant, db):
    writer = await scoped_key(db, tenant, "loyalty:write", "loyalty:read")
    percent = await create_campaign(client, writer, per_profile_limit=0)  # 10% off, min 200.00 CNY
    gift = await create_campaign(client, writer, name="Tote", discount_type="gift", percent_off=0, min_order_minor=0,
                                 gift_item_id="tote-bag", code_prefix="TOTE-", per_profile_limit=0)
    rachel, stranger = new_profile(), new_profile()

    async def issue(campaign: dict) -> str:
        r = await client.post(f"/v1/coupon-campaigns/{campaign['id']}/issue", headers=writer,
                              json={"profile_id": rachel})
        assert r.status_code == 201, r.text
        return r.json()["code"]

    async def validate(code: str, profile: str = rachel, order: dict | None = None) -> dict:
        r = await client.post(f"/v1/coupons/{code}/validate", headers=writer,
                              json={"profile_id": profile, "order": order or cart("o-1", 25000)})
        assert r.status_code == 200, r.text
        return r.json()

    # validate says what the coupon gives, to its owner only
    tote, ten = await issue(gift), await issue(percent)
    shown = await validate(tote)
    assert (shown["valid"], shown["discount_type"], shown["free_shipping"], shown["gift_item_id"]) == (
        True, "gift", False, "tote-bag")
    assert (await validate(ten))["discount_type"] == "percent_off"
    hidden = await validate(tote, stranger)
    assert (hidden["reason"], hidden["discount_type"], hidden["gift_item_id"]) == ("not_owner", None, None)

    # release with a profile: only the owner
    held = await client.post(f"/v1/coupons/{ten}/reserve", headers=writer, json={"profile_id": rachel,
                                                                                 "order_id": "o-1"})
    assert held.status_code == 200, held.text
    foreign = await client.post(f"/v1/coupons/{ten}/release", headers=writer,
                                json={"order_id": "o-1", "profile_id": stranger})
    assert_problem(foreign, 403, "not_owner")
    assert (await client.get(f"/v1/coupons/{ten}", headers=writer)).json()["state"] == "reserved"
    released = await client.post(f"/v1/coupons/{ten}/release", headers=writer,
                                 json={"order_id": "o-1", "profile_id": rachel})
    assert released.status_code == 200 and released.json()["state"] == "issued", released.text

    # redeem with the order: refused when it does not apply, else the service's discount wins
    too_small = await client.post(f"/v1/coupons/{ten}/redeem", headers=writer,
                                  json={"profile_id": rachel, "order_id": "o-2", "order": cart("o-2", 5000)})
    assert_problem(too_small, 409, "min_order_not_met")
    body = {"profile_id": rachel, "order_id": "o-2", "discount_minor": 1, "currency": "USD",
            "order": cart("o-2", 25000)}
    priced = await client.post(f"/v1/coupons/{ten}/redeem", headers={**writer, "Idempotency-Key": "pay-o-2"},
                               json=body)
    assert priced.status_code == 200, priced.text
    assert (priced.json()["state"], priced.json()["discount_minor"], priced.json()["currency"]) == (
        "redeemed", 2500, "CNY")
    retried = await client.post(f"/v1/coupons/{ten}/redeem", headers={**writer, "Idempotency-Key": "pay-o-2"},
                                json=body)
    assert retried.json() == priced.json()
    mismatch = await client.post(f"/v1/coupons/{tote}/redeem", headers=writer,
                                 json={"profile_id": rachel, "order_id": "o-3", "order": cart("o-9", 100)})
    assert_problem(mismatch, 400, "order_id_mismatch")

    # revoke: Idempotency-Key honoured, actor defaults to the API key, final afterwards
    path = f"/v1/coupons/{tote.lower()}/revoke"
    revoked = await client.post(path, headers={**writer, "Idempotency-Key": "rv-1"}, json={"reason": "fraud"})
    assert revoked.status_code == 200, revoked.text
    gone = revoked.json()
    assert (gone["state"], gone["revoke_reason"]) == ("revoked", "fraud")
    assert gone["revoked_by"].startswith("api_key:") and gone["revoked_at"] is not None
    again = await client.post(path, headers={**writer, "Idempotency-Key": "rv-1"}, json={"reason": "fraud"})
    assert again.status_code == 200 and again.json() == gone
    other_reason = await client.post(path, headers=writer, json={"reason": "other", "actor": "ops@example.com"})
    assert other_reason.json() == gone  # revoking a revoked coupon changes nothing
    assert (await client.get(f"/v1/coupons/{tote}", headers=writer)).json() == gone
    dead = await validate(tote)
    assert (dead["valid"], dead["reason"], dead["discount_type"]) == (False, "revoked", "gift")
    for action, extra in (("reserve", {}), ("redeem", {})):
        refused = await client.post(f"/v1/coupons/{tote}/{action}", headers=writer,
                                    json={"profile_id": rachel, "order_id": "o-4", **extra})
        assert_problem(refused, 409, "revoked")
    assert_problem(await client.post(f"/v1/coupons/{ten}/revoke", headers=writer, json={"reason": "late"}), 409,
                   "redeemed")
    assert_problem(await client.post("/v1/coupons/NOPE-1/revoke", headers=writer, json={"reason": "x"}), 404,
                   "coupon_not_found")
    assert_problem(await client.post(f"/v1/coupons/{ten}/revoke", headers=writer, json={"reason": "   "}), 400,
                   "invalid_reason")
    by_ops = await client.post(f"/v1/coupons/{await issue(gift)}/revoke", headers=writer,
                               json={"reason": "issued_by_mistake", "actor": "ops@example.com"})
    assert by_ops.json()["revoked_by"] == "ops@example.com"
    wallet = (await client.get(f"/v1/loyalty/members/{rachel}/coupons", params={"state": "revoked"},
                               headers=writer)).json()
    assert {c["code"] for c in wallet["coupons"]} == {tote, by_ops.json()["code"]}


# ---- rewards -------------------------------------------------------------------------------------


async def test_rewards_catalogue_redemption_and_fulfilment(client, admin, tenant, db):
    program_id, profile = await enrolled(client, admin)
    writer = await scoped_key(db, tenant, "loyalty:write", "loyalty:read")
    earned = await client.post(f"/v1/loyalty/members/{profile}/earn", headers=admin,
                               json={"program_id": program_id, "points": 2000, "reason": "signup"})
    assert earned.status_code == 200, earned.text
    ship = await create_campaign(client, admin, name="Free shipping", discount_type="free_shipping", percent_off=0,
                                 min_order_minor=0, per_profile_limit=0, code_prefix="SHIP-")
    catalogue = f"/v1/loyalty/programs/{program_id}/rewards"
    socks_body = {"name": "Running socks", "kind": "gift", "points_cost": 800, "stock": 2,
                  "image_url": "https://cdn.example.com/socks.png"}

    socks = await client.post(catalogue, headers={**writer, "Idempotency-Key": "r-socks"}, json=socks_body)
    socks_again = await client.post(catalogue, headers={**writer, "Idempotency-Key": "r-socks"}, json=socks_body)
    assert socks.status_code == 201, socks.text
    socks_id = socks.json()["id"]
    assert socks.headers["location"] == f"{catalogue}/{socks_id}"
    assert socks_again.json()["id"] == socks_id
    assert (socks.json()["kind"], socks.json()["program_id"], socks.json()["image_url"]) == (
        "gift", program_id, "https://cdn.example.com/socks.png")
    for body in ({"name": "Race ticket", "kind": "digital", "points_cost": 100, "unlimited_stock": True,
                  "min_tier_code": "gold"},
                 {"name": "Watch", "kind": "gift", "points_cost": 50000, "stock": 1},
                 {"name": "Free shipping", "kind": "coupon", "points_cost": 300, "unlimited_stock": True,
                  "coupon_campaign_id": ship["id"]}):
        r = await client.post(catalogue, headers=writer, json=body)
        assert r.status_code == 201, r.text
    renamed = await client.put(f"{catalogue}/{socks_id}", headers=writer, json={**socks_body, "name": "Socks (pair)"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Socks (pair)", renamed.text

    listed = (await client.get(catalogue, headers=writer)).json()["rewards"]
    assert [r["name"] for r in listed] == ["Race ticket", "Free shipping", "Socks (pair)", "Watch"]  # cheapest first
    eligible = await client.get(catalogue, params={"profile_id": profile, "eligible_only": True}, headers=writer)
    assert [r["name"] for r in eligible.json()["rewards"]] == ["Free shipping", "Socks (pair)"]  # tier, balance
    page1 = (await client.get(catalogue, params={"limit": 3}, headers=writer)).json()
    page2 = (await client.get(catalogue, params={"limit": 3, "cursor": page1["next_cursor"]}, headers=writer)).json()
    assert [r["name"] for r in page1["rewards"] + page2["rewards"]] == [r["name"] for r in listed]

    # redeem a gift: one debit for a retried request
    redemptions = f"/v1/loyalty/members/{profile}/redemptions"
    order = {"program_id": program_id, "reward_id": socks_id, "quantity": 1,
             "shipping_address": {"name": "Rachel", "city": "Shanghai"}}
    first = await client.post(redemptions, headers={**writer, "Idempotency-Key": "red-1"}, json=order)
    retry = await client.post(redemptions, headers={**writer, "Idempotency-Key": "red-1"}, json=order)
    assert first.status_code == 201, first.text
    redemption = first.json()["redemption"]
    assert first.headers["location"] == f"/v1/loyalty/redemptions/{redemption['id']}"
    assert (redemption["status"], redemption["points"], redemption["quantity"]) == ("pending", 800, 1)
    assert redemption["shipping_address"] == {"name": "Rachel", "city": "Shanghai"}
    assert first.json()["member"]["balance"]["available"] == 1200
    assert retry.json()["redemption"]["id"] == redemption["id"]
    member = (await client.get(f"/v1/loyalty/members/{profile}", headers=writer)).json()
    assert member["balance"]["available"] == 1200  # not 400
    got = await client.get(f"/v1/loyalty/redemptions/{redemption['id']}", headers=writer)
    assert got.status_code == 200 and got.json() == redemption

    path = f"/v1/loyalty/redemptions/{redemption['id']}"
    shipped = await client.patch(path, headers=writer, json={"status": "shipped", "tracking_number": "SF123"})
    assert shipped.status_code == 200, shipped.text
    assert (shipped.json()["status"], shipped.json()["tracking_number"]) == ("shipped", "SF123")
    delivered = await client.patch(path, headers=writer, json={"status": "delivered"})
    assert delivered.json()["status"] == "delivered"
    too_late = await client.patch(path, headers=writer, json={"status": "cancelled", "reason": "changed mind"})
    assert_problem(too_late, 409, "invalid_transition")

    # the last pair, then none left; cancelling gives points and stock back
    second = await client.post(redemptions, headers=writer, json=order)
    assert second.status_code == 201, second.text
    none_left = await client.post(redemptions, headers=writer, json=order)
    assert_problem(none_left, 409, "out_of_stock")
    cancel = {"status": "cancelled", "reason": "out_of_stock"}
    cancelled = await client.patch(f"/v1/loyalty/redemptions/{second.json()['redemption']['id']}",
                                   headers={**writer, "Idempotency-Key": "cancel-2"}, json=cancel)
    cancelled_again = await client.patch(f"/v1/loyalty/redemptions/{second.json()['redemption']['id']}",
                                         headers={**writer, "Idempotency-Key": "cancel-2"}, json=cancel)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled_again.json() == cancelled.json()
    member = (await client.get(f"/v1/loyalty/members/{profile}", headers=writer)).json()
    assert member["balance"]["available"] == 1200  # credited back once
    stock = {r["id"]: r["stock"] for r in (await client.get(catalogue, headers=writer)).json()["rewards"]}
    assert stock[socks_id] == 1

    # a coupon reward is fulfilled at once with a coupon; a gold-only reward is refused
    coupon_reward = next(r for r in listed if r["kind"] == "coupon")
    got_coupon = await client.post(redemptions, headers=writer,
                                   json={"program_id": program_id, "reward_id": coupon_reward["id"]})
    assert got_coupon.status_code == 201, got_coupon.text
    fulfilled = got_coupon.json()["redemption"]
    assert fulfilled["status"] == "fulfilled" and fulfilled["coupon_code"].startswith("SHIP-")
    coupon = (await client.get(f"/v1/coupons/{fulfilled['coupon_code']}", headers=writer)).json()
    assert (coupon["profile_id"], coupon["state"], coupon["source"]) == (profile, "issued", "reward")
    assert_problem(await client.patch(f"/v1/loyalty/redemptions/{fulfilled['id']}", headers=writer, json=cancel),
                   409, "not_cancellable")
    ticket = next(r for r in listed if r["kind"] == "digital")
    assert_problem(await client.post(redemptions, headers=writer,
                                     json={"program_id": program_id, "reward_id": ticket["id"]}), 409, "tier_too_low")
    no_address = await client.post(redemptions, headers=writer, json={"program_id": program_id, "reward_id": socks_id})
    assert_problem(no_address, 400, "shipping_address_required")

    mine = (await client.get(redemptions, headers=writer)).json()
    assert [r["id"] for r in mine["redemptions"]] == [
        fulfilled["id"], second.json()["redemption"]["id"], redemption["id"]]  # newest first
    assert [r["status"] for r in mine["redemptions"]] == ["fulfilled", "cancelled", "delivered"]
    page = (await client.get(redemptions, params={"program_id": program_id, "limit": 2}, headers=writer)).json()
    assert len(page["redemptions"]) == 2 and page["next_cursor"]

    # 404 with stable codes
    assert_problem(await client.get(f"/v1/loyalty/redemptions/{uuid.uuid4()}", headers=writer), 404,
                   "redemption_not_found")
    assert_problem(await client.patch(f"/v1/loyalty/redemptions/{uuid.uuid4()}", headers=writer,
                                      json={"status": "shipped"}), 404, "redemption_not_found")
    assert_problem(await client.put(f"{catalogue}/{uuid.uuid4()}", headers=writer, json=socks_body), 404,
                   "reward_not_found")
    assert_problem(await client.post(redemptions, headers=writer, json={**order, "reward_id": str(uuid.uuid4())}),
                   404, "reward_not_found")
    assert_problem(await client.get(f"/v1/loyalty/programs/{uuid.uuid4()}/rewards", headers=writer), 404,
                   "program_not_found")


async def test_reward_errors_are_problems(client, admin, tenant, db):
    program = await create_program(client, admin)
    reader = await scoped_key(db, tenant, "loyalty:read")
    profiles_only = await scoped_key(db, tenant, "profiles:read")
    pid, profile, rid = program["id"], new_profile(), str(uuid.uuid4())
    reward = {"name": "Running socks", "kind": "gift", "points_cost": 800, "stock": 10}
    redemption = {"program_id": pid, "reward_id": rid, "quantity": 1, "shipping_address": {"city": "Shanghai"}}

    writes = [
        ("post", f"/v1/loyalty/programs/{pid}/rewards", reward),
        ("put", f"/v1/loyalty/programs/{pid}/rewards/{rid}", reward),
        ("post", f"/v1/loyalty/members/{profile}/redemptions", redemption),
        ("patch", f"/v1/loyalty/redemptions/{rid}", {"status": "shipped"}),
    ]
    for method, path, body in writes:
        denied = await client.request(method, path, headers=reader, json=body)
        assert assert_problem(denied, 403, "insufficient_scope")["required_scope"] == "loyalty:write", path
        assert_problem(await client.request(method, path, json=body), 401, "missing_api_key")
    for path in (f"/v1/loyalty/programs/{pid}/rewards", f"/v1/loyalty/redemptions/{rid}",
                 f"/v1/loyalty/members/{profile}/redemptions"):
        denied = await client.get(path, headers=profiles_only)
        assert assert_problem(denied, 403, "insufficient_scope")["required_scope"] == "loyalty:read", path

    bad = [
        (f"/v1/loyalty/programs/{pid}/rewards", "post", {**reward, "kind": "coupon"}),  # no campaign
        (f"/v1/loyalty/programs/{pid}/rewards", "post", {**reward, "coupon_campaign_id": rid}),  # not a coupon
        (f"/v1/loyalty/programs/{pid}/rewards", "post", {**reward, "kind": "car"}),
        (f"/v1/loyalty/programs/{pid}/rewards", "post", {**reward, "points_cost": 0}),
        (f"/v1/loyalty/programs/{pid}/rewards", "post", {**reward, "stock": -1}),
        (f"/v1/loyalty/programs/{pid}/rewards", "post", {**reward, "image_url": "not a url"}),
        (f"/v1/loyalty/programs/{pid}/rewards", "post", {**reward, "min_tier_code": "gold tier"}),
        (f"/v1/loyalty/members/{profile}/redemptions", "post", {**redemption, "quantity": 0}),
        (f"/v1/loyalty/members/{profile}/redemptions", "post", {**redemption, "reward_id": "socks"}),
        (f"/v1/loyalty/members/{profile}/redemptions", "post", {**redemption, "shipping_address": "Shanghai"}),
        (f"/v1/loyalty/members/{profile}/redemptions", "post", {**redemption, "shipping_address": {}}),
        (f"/v1/loyalty/redemptions/{rid}", "patch", {"status": "lost"}),
        (f"/v1/loyalty/redemptions/{rid}", "patch", {"status": "pending"}),
        (f"/v1/loyalty/redemptions/{rid}", "patch", {"status": "cancelled"}),  # no reason
    ]
    for path, method, body in bad:
        assert_problem(await client.request(method, path, headers=admin, json=body), 422, "validation_failed")
    assert_problem(await client.get(f"/v1/loyalty/programs/{pid}/rewards", params={"eligible_only": "true"},
                                    headers=admin), 400, "invalid_request")
    assert_problem(await client.get("/v1/loyalty/redemptions/not-a-uuid", headers=admin), 400, "invalid_request")


# ---- tenancy -------------------------------------------------------------------------------------


async def test_another_tenant_sees_none_of_it(client, admin, make_tenant):
    program_id, profile = await enrolled(client, admin)
    campaign = await create_campaign(client, admin)
    code = (await client.post(f"/v1/coupon-campaigns/{campaign['id']}/issue", headers=admin,
                              json={"profile_id": profile})).json()["code"]
    other = bearer((await make_tenant()).secret_key)

    assert (await client.get("/v1/loyalty/programs", headers=other)).json()["programs"] == []
    assert_problem(await client.get(f"/v1/loyalty/programs/{program_id}", headers=other), 404, "program_not_found")
    assert_problem(await client.get(f"/v1/loyalty/members/{profile}", headers=other), 404, "program_not_found")
    assert_problem(await client.get(f"/v1/coupon-campaigns/{campaign['id']}", headers=other), 404,
                   "campaign_not_found")
    assert_problem(await client.get(f"/v1/coupons/{code}", headers=other), 404, "coupon_not_found")
    assert (await client.get(f"/v1/loyalty/members/{profile}/coupons", headers=other)).json()["coupons"] == []


# ---- docs ----------------------------------------------------------------------------------------


async def test_openapi_lists_the_loyalty_coupon_and_reward_routes_under_their_tags(client):
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    expected = {
        "loyalty": ["/v1/loyalty/programs", "/v1/loyalty/programs/{program_id}",
                    "/v1/loyalty/programs/{program_id}/report", "/v1/loyalty/programs/{program_id}/members",
                    "/v1/loyalty/members/{profile_id}", "/v1/loyalty/members/{profile_id}/earn",
                    "/v1/loyalty/members/{profile_id}/spend", "/v1/loyalty/members/{profile_id}/adjust",
                    "/v1/loyalty/members/{profile_id}/reverse", "/v1/loyalty/members/{profile_id}/ledger"],
        "coupons": ["/v1/coupon-campaigns", "/v1/coupon-campaigns/{campaign_id}",
                    "/v1/coupon-campaigns/{campaign_id}/codes", "/v1/coupon-campaigns/{campaign_id}/issue",
                    "/v1/coupons/{code}", "/v1/coupons/{code}/validate", "/v1/coupons/{code}/reserve",
                    "/v1/coupons/{code}/redeem", "/v1/coupons/{code}/release",
                    "/v1/loyalty/members/{profile_id}/coupons"],
        "rewards": ["/v1/loyalty/programs/{program_id}/rewards",
                    "/v1/loyalty/programs/{program_id}/rewards/{reward_id}",
                    "/v1/loyalty/members/{profile_id}/redemptions", "/v1/loyalty/redemptions/{redemption_id}"],
    }
    for tag, tagged in expected.items():
        for path in tagged:
            assert path in paths, path
            assert all(op["tags"] == [tag] for op in paths[path].values()), path
    assert {"loyalty", "coupons", "rewards"} <= {t["name"] for t in spec["tags"]}
    schemas = spec["components"]["schemas"]
    assert schemas["CampaignWrite"]["properties"]["discount_type"]["enum"] == [
        "percent_off", "amount_off", "free_shipping", "gift"]
    assert schemas["ProgramWrite"]["examples"]
    earn = paths["/v1/loyalty/members/{profile_id}/earn"]["post"]
    assert "Idempotency-Key" in {p["name"] for p in earn["parameters"]}
    assert {"401", "403", "404", "409", "422"} <= set(earn["responses"])
