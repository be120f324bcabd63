"""Rachel, steps 1-3 of the acceptance story (docs: shared DOMAIN.md), through the public HTTP API of
a whole stack started as `mcloud up` starts it: she browses anonymously, then signs up with her email;
the anonymous visitor and the new member are ONE profile and her browsing history is kept. Then the
store clerk looks her up before she joins the loyalty program (and before the shop has a catalogue): the
view shows no membership and nothing to suggest, and nothing is unavailable."""

from __future__ import annotations

import uuid

import httpx
import pytest


@pytest.fixture(scope="module")
def acme(new_tenant):
    return new_tenant("rachel")


async def test_rachel_browses_anonymously_then_signs_up_and_stays_one_profile_with_her_history(stack, acme):
    anon = f"device-{uuid.uuid4()}"
    email = f"rachel-{uuid.uuid4().hex[:6]}@example.com"
    user_id = f"member-{uuid.uuid4().hex[:6]}"
    shoes = ["pegasus-40", "vaporfly-3", "pegasus-40"]
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(acme["write_key"], "")) as sdk:
        # 1. she arrives anonymously (a cookie id only)
        r = await sdk.post("/v1/page", json={"anonymousId": anon, "name": "Home", "properties": {"path": "/"}})
        assert r.status_code == 200, r.text
        # 2. she views running shoes
        for shoe in shoes:
            r = await sdk.post("/v1/track", json={"anonymousId": anon, "event": "Product Viewed",
                                                  "properties": {"product_id": shoe, "category": "running_shoes"}})
            assert r.status_code == 200, r.text
        # 3. exit-intent popup: she signs up with her email, on the same device
        r = await sdk.post("/v1/identify", json={"anonymousId": anon, "userId": user_id,
                                                 "traits": {"email": email, "name": "Rachel"}})
        assert r.status_code == 200, r.text

    async with httpx.AsyncClient(base_url=stack.gateway_url,
                                 headers={"Authorization": f"Bearer {acme['secret_key']}"}) as api:
        by_device = await api.get(f"/v1/profiles/anonymous_id:{anon}")
        by_email = await api.get(f"/v1/profiles/email:{email}")
        by_user = await api.get(f"/v1/profiles/user_id:{user_id}")
        for r in (by_device, by_email, by_user):
            assert r.status_code == 200, r.text
        profile = by_email.json()
        assert by_device.json()["id"] == profile["id"] == by_user.json()["id"]
        assert profile["traits"]["email"] == email and profile["traits"]["name"] == "Rachel"
        assert {"type": "anonymous_id", "value": anon} in profile["identifiers"]
        assert {"type": "email", "value": email} in profile["identifiers"]

        events = await api.get(f"/v1/profiles/email:{email}/events")
        assert events.status_code == 200, events.text
        history = events.json()["events"]
        viewed = [e["properties"]["product_id"] for e in history if e["name"] == "Product Viewed"]
        assert sorted(viewed) == sorted(shoes)  # the anonymous views are hers now
        assert {e["type"] for e in history} == {"page", "track", "identify"}


async def test_the_clerk_sees_her_before_she_is_a_member(stack, acme):
    anon = f"device-{uuid.uuid4()}"
    email = f"rachel-{uuid.uuid4().hex[:6]}@example.com"
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(acme["write_key"], "")) as sdk:
        r = await sdk.post("/v1/batch", json={"batch": [
            {"type": "track", "anonymousId": anon, "event": "Product Viewed", "properties": {"product_id": "p-1"}},
            {"type": "identify", "anonymousId": anon, "traits": {"email": email}},
        ]})
        assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    async with httpx.AsyncClient(base_url=stack.gateway_url,
                                 headers={"Authorization": f"Bearer {acme['secret_key']}"}) as api:
        r = await api.get(f"/v1/clerk/email:{email}")
        missing = await api.get("/v1/clerk/email:nobody-at-all@example.com")
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["profile"]["traits"]["email"] == email
    assert [e["properties"]["product_id"] for e in view["recent_views"]] == ["p-1"]
    assert view["loyalty"] is None  # not a member (the tenant has no program)
    assert view["recommendations"] == []  # nothing to suggest: the tenant has no catalogue yet
    assert view["unavailable"] == []
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
