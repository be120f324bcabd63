"""The vertical slice through the whole stack: an official Segment SDK from PyPI, pointed at the
gateway, sends a batch; the profile reads back through the gateway; the events are on the stream."""

from __future__ import annotations

import uuid

import httpx
import pytest
import redis.asyncio as aioredis
from segment.analytics.client import Client

from mcloud.events.v1 import event_pb2
from mcloud_common.bus import decode, streams_of
from mcloud_common.testing.services import wait_until


@pytest.fixture(scope="module")
def tenants(new_tenant):
    return new_tenant("acme"), new_tenant("globex")


async def _stream_events(redis_url: str, profile_id: str) -> list[event_pb2.Event]:
    client = aioredis.from_url(redis_url)
    try:
        events = []
        for stream in streams_of("identity", 4):
            events += [decode(fields) for _, fields in await client.xrange(stream)]
        return [e for e in events if e.profile_id == profile_id]
    finally:
        await client.aclose()


async def test_segment_sdk_batch_lands_in_one_profile_and_on_the_stream(stack, tenants):
    acme, _ = tenants
    errors: list[Exception] = []
    sdk = Client(acme["write_key"], host=stack.gateway_url, on_error=lambda e, _batch: errors.append(e),
                 upload_size=100, max_retries=2, sync_mode=False)
    anon = f"anon-{uuid.uuid4()}"
    user = f"rachel-{uuid.uuid4().hex[:6]}"
    for i in range(5):
        sdk.track(anonymous_id=anon, event="Product Viewed", properties={"product_id": "shoe-1", "i": i})
    sdk.page(anonymous_id=anon, name="Running Shoes", properties={"path": "/running"})
    sdk.identify(user_id=user, anonymous_id=anon, traits={"email": "Rachel@Example.com", "name": "Rachel"})
    sdk.track(user_id=user, event="Order Completed", properties={"order_id": "o-1", "revenue": 129})
    sdk.flush()
    sdk.join()
    assert errors == []

    headers = {"Authorization": f"Bearer {acme['secret_key']}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers) as http:
        r = await http.get(f"/v1/profiles/user_id:{user}")
        assert r.status_code == 200, r.text
        profile = r.json()
        assert profile["traits"]["name"] == "Rachel"
        assert {"type": "email", "value": "rachel@example.com"} in profile["identifiers"]
        assert {"type": "anonymous_id", "value": anon} in profile["identifiers"]
        # the same person by every identifier she has
        for ident in (f"anonymous_id:{anon}", "email:rachel@example.com", profile["id"]):
            assert (await http.get(f"/v1/profiles/{ident}")).json()["id"] == profile["id"]
        events = (await http.get(f"/v1/profiles/{profile['id']}/events")).json()
        names = [e.get("name") or e.get("event") for e in events["events"]]
        assert names.count("Product Viewed") == 5 and "Order Completed" in names

    on_stream = await wait_until(
        lambda: _ready(stack.urls["valkey"], profile["id"], 10), timeout=20, message="10 events on the stream")
    calls = [e for e in on_stream if e.type in ("track", "page", "identify")]
    assert len(calls) == 8 and {e.type for e in calls} == {"track", "page", "identify"}
    # and what those calls changed: her traits, and her first order made her a first-time buyer
    assert {e.type for e in on_stream} - {e.type for e in calls} == {"profile.identified", "lifecycle.changed"}
    assert all(e.tenant_id == acme["tenant_id"] for e in on_stream)


async def _ready(redis_url: str, profile_id: str, n: int):
    events = await _stream_events(redis_url, profile_id)
    return events if len(events) >= n else None


async def test_a_repeated_message_id_is_stored_once(stack, tenants):
    acme, _ = tenants
    body = {"batch": [{"type": "track", "event": "Clicked", "anonymousId": "dup-person", "messageId": "same-id"}] * 3}
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(acme["write_key"], "")) as http:
        first = (await http.post("/v1/batch", json=body)).json()
        second = (await http.post("/v1/batch", json=body)).json()
    assert (first["accepted"], first["duplicates"]) == (1, 2)
    assert (second["accepted"], second["duplicates"]) == (0, 3)


async def test_keys_are_walled_by_tenant_and_by_kind(stack, tenants):
    acme, globex = tenants
    async with httpx.AsyncClient(base_url=stack.gateway_url) as http:
        r = await http.post("/v1/identify", auth=(acme["write_key"], ""),
                            json={"userId": "acme-secret-customer", "traits": {"tier": "gold"}})
        assert r.status_code == 200, r.text
        mine = await http.get("/v1/profiles/user_id:acme-secret-customer",
                              headers={"Authorization": f"Bearer {acme['secret_key']}"})
        assert mine.status_code == 200
        # another tenant's secret key: not found, by identifier or by id
        for path in ("/v1/profiles/user_id:acme-secret-customer", f"/v1/profiles/{mine.json()['id']}"):
            theirs = await http.get(path, headers={"Authorization": f"Bearer {globex['secret_key']}"})
            assert theirs.status_code == 404
            assert theirs.headers["content-type"].startswith("application/problem+json")
        # a write key (safe in browsers) never reads profiles
        r = await http.get("/v1/profiles/user_id:acme-secret-customer", auth=(acme["write_key"], ""))
        assert r.status_code == 403
        assert r.json()["code"]


async def test_a_batch_larger_than_one_identity_call_is_stored_whole_and_odd_values_are_refused_per_event(
        stack, tenants):
    acme, _ = tenants
    run = uuid.uuid4().hex[:8]
    batch = [{"type": "track", "event": "e", "anonymousId": f"bulk-{run}-{i % 50}", "messageId": f"{run}-{i}"}
             for i in range(2600)]
    batch[5]["timestamp"] = "0001-01-01T00:00:00+01:00"  # shifts before year 1
    batch[6]["properties"] = {"note": "nul\u0000inside"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, auth=(acme["write_key"], ""), timeout=60) as http:
        r = await http.post("/v1/batch", json={"batch": batch})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(x["index"], x["code"]) for x in body["rejected"]] == [(5, "invalid_timestamp"), (6, "invalid_character")]
    assert body["accepted"] == 2598
