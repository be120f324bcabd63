"""Rachel, steps 2 to 5 of the acceptance story (shared DOMAIN.md) for recommend, through the public HTTP
API of a whole stack started as `mcloud up` starts it. The storefront sends behaviour to /v1/batch;
identity resolves it and republishes it on the bus; recommend learns from it in real time:

2. anonymous, she first gets popular items; once she views running shoes, items like them and the
   city marathon (an activity matching her interest);
3. she signs up with the email the shop already knew: identity merges her anonymous profile into the
   known one and her browsing comes along;
4. she views the same shoe again and keeps it in her cart: her intent locks and recommendations switch to
   complements from other categories (socks, a watch, energy gels), not more shoes; identity learns the
   intent as a computed trait;
5. she orders the shoe: it is never recommended back to her, and the intent is released."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest

from mcloud_cli.stack import OffsetClock, start_stack
from mcloud_common.testing.services import wait_until

SHOES = ["sports", "running", "running_shoes"]
CATALOGUE = [
    {"id": "pegasus-40", "title": "Pegasus 40", "categories": SHOES, "price": 159, "currency": "EUR",
     "tags": ["running", "road"]},
    {"id": "vomero-17", "title": "Vomero 17", "categories": SHOES, "price": 179, "currency": "EUR",
     "tags": ["running"]},
    {"id": "ghost-15", "title": "Ghost 15", "categories": SHOES, "price": 149, "currency": "EUR",
     "tags": ["running", "road"]},
    {"id": "run-socks", "title": "Run socks", "categories": ["sports", "running", "socks"], "price": 15,
     "currency": "EUR", "tags": ["running"]},
    {"id": "forerunner-265", "title": "Forerunner 265", "categories": ["sports", "running", "watches"],
     "price": 449, "currency": "EUR", "tags": ["running", "gps"]},
    {"id": "gel-pack", "title": "Energy gels x12", "categories": ["sports", "nutrition", "energy_gels"],
     "price": 24, "currency": "EUR", "tags": ["running", "marathon"], "replenish_after_days": 30},
    {"id": "yoga-mat", "title": "Yoga mat", "categories": ["sports", "yoga", "mats"], "price": 39,
     "currency": "EUR", "tags": ["yoga"]},
    {"id": "city-marathon", "kind": "activity", "title": "City Marathon", "categories": ["events", "running_events"],
     "tags": ["running", "marathon"]},
    {"id": "yoga-retreat", "kind": "activity", "title": "Yoga retreat", "categories": ["events", "yoga_events"],
     "tags": ["yoga"]},
]


@pytest.fixture(scope="module")
def clock(tmp_path_factory) -> OffsetClock:
    return OffsetClock(tmp_path_factory.mktemp("clock") / "offset")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, clock):
    """A stack of its own: this story moves the clock (her shoe sits in the cart for ten minutes)."""
    with start_stack(tmp_path_factory.mktemp("rachel") / "mcloud",
                     extra_args=["--clock-offset-file", str(clock.path)]) as handle:
        yield handle


@pytest.fixture(scope="module")
def shop(new_tenant):
    return new_tenant("rachel-recommend")


async def eventually(probe, message: str):
    return await wait_until(probe, timeout=30, interval=0.1, message=message)


def track(anon: str, event: str, **properties) -> dict:
    return {"type": "track", "anonymousId": anon, "event": event, "properties": properties}


async def test_rachel_gets_similar_items_then_complements_once_her_intent_locks(stack, shop, clock):
    device, email = f"device-{uuid.uuid4()}", f"rachel-{uuid.uuid4().hex[:6]}@example.com"
    admin = {"Authorization": f"Bearer {shop['secret_key']}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=admin, timeout=10) as api, \
            httpx.AsyncClient(base_url=stack.gateway_url, auth=(shop["write_key"], ""), timeout=10) as sdk:
        r = await api.put("/v1/recommendations/settings", json={
            "intent_min_views": 3, "intent_cart_minutes": 10,
            "complements": {"running_shoes": ["socks", "watches", "energy_gels"]}})
        assert r.status_code == 200, r.text
        r = await api.post("/v1/catalog/items", json={"items": CATALOGUE})
        assert r.status_code == 200 and r.json()["upserted"] == len(CATALOGUE), r.text
        # the shop knew her already (a CRM import): a known profile with her email
        crm = {"type": "identify", "userId": f"crm-{uuid.uuid4().hex[:6]}", "traits": {"email": email}}
        assert (await sdk.post("/v1/batch", json={"batch": [crm]})).status_code == 200

        async def recs(**params):
            r = await api.get("/v1/recommendations", params={"count": 6, **params})
            assert r.status_code == 200, r.text
            return r.json()

        # 2. anonymous: popular first, then items like the shoes she views and the marathon
        assert (await recs(anonymous_id=device))["cold_start"] is True
        views = [track(device, "Product Viewed", product_id="ghost-15", category="running_shoes", price=149)]
        assert (await sdk.post("/v1/batch", json={"batch": views})).status_code == 200

        async def warm():
            body = await recs(anonymous_id=device)
            return body if not body["cold_start"] else None

        body = await eventually(warm, "recommendations learn from her first view")
        by = {i["item_id"]: i for i in body["items"]}
        similar = [i for i in body["items"] if i["recommender"] == "session"]
        assert similar and {i["item_id"] for i in similar} & {"pegasus-40", "vomero-17"}
        assert "Ghost 15" in similar[0]["explanation"]
        assert by.get("city-marathon", {}).get("recommender") == "interest_activity"
        assert "yoga-retreat" not in by

        # 3. she signs up with that email: one profile, her browsing kept
        signup = [{"type": "identify", "anonymousId": device, "traits": {"email": email}},
                  track(device, "Signed Up", source="exit_intent_popup")]
        assert (await sdk.post("/v1/batch", json={"batch": signup})).status_code == 200

        async def merged():
            body = await recs(profile=f"email:{email}")
            return body if not body["cold_start"] else None

        await eventually(merged, "her anonymous browsing reaches the known profile")

        # 4. the same shoe, again and again, and into the cart: intent locks, complements lead
        again = [track(device, "Product Viewed", product_id="pegasus-40") for _ in range(3)]
        again.append(track(device, "Product Added", product_id="pegasus-40", quantity=1))
        assert (await sdk.post("/v1/batch", json={"batch": again})).status_code == 200

        async def locked():
            body = await recs(profile=f"email:{email}")
            return body if body["intent_locked"] else None

        async def in_cart():
            r = await api.get("/v1/recommendations/intent", params={"profile": f"email:{email}"})
            return r.json() if r.json().get("item_id") == "pegasus-40" else None

        waiting = await eventually(in_cart, "the shoe is in her cart")
        assert waiting["locked"] is False  # not yet: it has to sit in the cart for ten minutes
        clock.advance(timedelta(minutes=11))
        body = await eventually(locked, "intent locked")
        lead = body["items"][:3]
        assert [i["recommender"] for i in lead] == ["cross_category"] * 3
        assert {i["item"]["categories"][-1] for i in lead} == {"socks", "watches", "energy_gels"}
        assert all(i["explanation"] == "Goes with Pegasus 40" for i in lead)
        intent = (await api.get("/v1/recommendations/intent", params={"profile": f"email:{email}"})).json()
        assert intent["locked"] is True and intent["item_id"] == "pegasus-40"

        async def trait():
            p = (await api.get(f"/v1/profiles/email:{email}")).json()
            return p if p["computed"].get("intent_item") == "pegasus-40" else None

        await eventually(trait, "identity knows her intent")

        # 5. she orders the shoe: never recommended back, intent released
        order = track(device, "Order Completed", order_id=f"W-{uuid.uuid4().hex[:6]}", total=159, currency="EUR",
                      products=[{"product_id": "pegasus-40", "price": 159, "quantity": 1}])
        assert (await sdk.post("/v1/batch", json={"batch": [order]})).status_code == 200

        async def bought():
            body = await recs(profile=f"email:{email}", count=9)
            return body if not body["intent_locked"] else None

        body = await eventually(bought, "the order reaches recommend")
        assert "pegasus-40" not in [i["item_id"] for i in body["items"]]
