"""Rachel, steps 3 and 5 of the acceptance story (shared DOMAIN.md) for loyalty, through the public HTTP
API of a whole stack started as `mcloud up` starts it: she signs up (the program auto-enrols her and
the welcome rule pays), then orders: "an order earns 100 points" plus a point per euro fires from the
storefront's "Order Completed" event, her points land (pending for the return window), she crosses
the Silver threshold, tier.changed reaches identity (her profile's loyalty_tier trait, for segments
and journeys) and the store clerk sees her as Silver. A replay of the order earns nothing more."""

from __future__ import annotations

import uuid

import httpx
import pytest

from mcloud_common.testing.services import wait_until

PROGRAM = {
    "name": "Runners Club", "currency": "EUR", "auto_enroll": True, "pending_days": 14,
    "points_validity_days": 365, "tier_window_months": 12,
    "tiers": [{"code": "normal", "name": "Normal", "rank": 0},
              {"code": "silver", "name": "Silver", "rank": 1, "threshold_points": 250, "discount_percent": 5,
               "benefits": [{"code": "early_access", "name": "Early access to drops"}]},
              {"code": "gold", "name": "Gold", "rank": 2, "threshold_points": 6000, "free_shipping": True}],
    "earn_rules": [{"name": "An order earns 100 points", "trigger": "order", "points": 100},
                   {"name": "1 point per euro", "trigger": "order", "points_per_unit": 1, "unit_minor": 100},
                   {"name": "Welcome", "trigger": "signup", "points": 50},
                   {"name": "Reviews", "trigger": "review", "points": 20}],
}


@pytest.fixture(scope="module")
def acme(new_tenant):
    return new_tenant("rachel-loyalty")


async def eventually(probe):
    """Poll `probe` (async, returns a value or None) until it returns something, for up to 30 s."""
    return await wait_until(probe, timeout=30, interval=0.1, message=getattr(probe, "__name__", "condition"))


async def test_rachel_signs_up_orders_earns_points_and_becomes_silver(stack, acme):
    anon, email = f"device-{uuid.uuid4()}", f"rachel-{uuid.uuid4().hex[:6]}@example.com"
    admin = {"Authorization": f"Bearer {acme['secret_key']}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=admin, timeout=10) as api, \
            httpx.AsyncClient(base_url=stack.gateway_url, auth=(acme["write_key"], ""), timeout=10) as sdk:
        r = await api.post("/v1/loyalty/programs", json=PROGRAM, headers={"Idempotency-Key": "runners-club"})
        assert r.status_code == 201, r.text
        program_id = r.json()["id"]

        # 3. the exit-intent popup: she signs up with her email, on the device she browsed with
        r = await sdk.post("/v1/batch", json={"batch": [
            {"type": "track", "anonymousId": anon, "event": "Product Viewed",
             "properties": {"product_id": "pegasus-40", "category": "running_shoes", "price": 159}},
            {"type": "identify", "anonymousId": anon, "traits": {"email": email}},
            {"type": "track", "anonymousId": anon, "event": "Signed Up", "properties": {"source": "exit_intent_popup"}},
        ]})
        assert r.status_code == 200, r.text
        profile_id = (await api.get(f"/v1/profiles/email:{email}")).json()["id"]

        async def member(minimum_pending: int = 0):
            r = await api.get(f"/v1/loyalty/members/{profile_id}", params={"program_id": program_id})
            if r.status_code == 200 and r.json()["balance"]["pending"] >= minimum_pending:
                return r.json()
            return None

        joined = await eventually(member)
        assert joined["tier"]["code"] == "normal" and joined["balance"]["available"] == 50
        assert joined["next_tier"] == {"code": "silver", "name": "Silver", "threshold": 250, "to_go": 200}

        # 5. she orders the shoes: 100 for the order + 159 for the euros, pending for the return window
        order = {"type": "track", "anonymousId": anon, "event": "Order Completed", "properties": {
            "order_id": f"W-{uuid.uuid4().hex[:6]}", "total": 159.0, "currency": "EUR",
            "products": [{"product_id": "pegasus-40", "category": "running_shoes", "price": 159.0, "quantity": 1}]}}
        assert (await sdk.post("/v1/batch", json={"batch": [order]})).status_code == 200
        silver = await eventually(lambda: member(minimum_pending=259))
        assert silver["balance"]["pending"] == 259 and silver["balance"]["available"] == 50
        assert silver["balance"]["qualifying"] == 309
        assert silver["tier"]["code"] == "silver" and silver["tier"]["discount_percent"] == 5
        assert [b["code"] for b in silver["benefits"]] == ["early_access"]
        assert silver["next_tier"]["to_go"] == 6000 - 309

        # tier.changed crossed the bus to identity: segments and journeys can use her tier
        async def tier_trait():
            p = (await api.get(f"/v1/profiles/{profile_id}")).json()
            return p if p["computed"].get("loyalty_tier") == "silver" else None

        profile = await eventually(tier_trait)
        assert profile["computed"]["loyalty_member"] is True

        # the storefront retries the same order, then she reviews the shoes: her events stay in order on
        # the bus, so once the review's points are booked the retry has been handled, and earned nothing
        retry = {**order, "messageId": f"retry-{uuid.uuid4()}"}
        review = {"type": "track", "anonymousId": anon, "event": "Product Reviewed",
                  "properties": {"product_id": "pegasus-40", "rating": 5}}
        assert (await sdk.post("/v1/batch", json={"batch": [retry, review]})).status_code == 200
        ledger = await eventually(lambda: _ledger(api, profile_id, program_id, 4))
        assert sorted(e["points"] for e in ledger["entries"]) == [20, 50, 100, 159]

        # the storefront knows her by her email (or user id), not by a profile id
        by_email = await api.get(f"/v1/loyalty/members/email:{email}", params={"program_id": program_id})
        assert by_email.status_code == 200 and by_email.json()["profile_id"] == profile_id, by_email.text
        nobody = await api.get("/v1/loyalty/members/email:nobody@example.com", params={"program_id": program_id})
        assert nobody.status_code == 404

        clerk = (await api.get(f"/v1/clerk/email:{email}")).json()
        assert clerk["loyalty"]["tier"]["code"] == "silver" and "loyalty" not in clerk["unavailable"]


async def _ledger(api: httpx.AsyncClient, profile_id: str, program_id: str, count: int):
    r = await api.get(f"/v1/loyalty/members/{profile_id}/ledger", params={"program_id": program_id})
    return r.json() if r.status_code == 200 and len(r.json()["entries"]) >= count else None
