"""The messaging people routes over HTTP against a REAL messaging service (in-process gRPC, its own
database, real Valkey): preferences, inbox, unsubscribe, suppressions, channel configuration with
write-only secrets, best send time; validation problems as 422 and service refusals as 400."""

from __future__ import annotations

import uuid

import httpx
import pytest

PROBLEM = "application/problem+json"
SMTP = {"host": "smtp.example.com", "port": 587, "from_email": "shop@example.com", "start_tls": True}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.fixture
def client(messaging_client) -> httpx.AsyncClient:
    return messaging_client


@pytest.fixture
async def admin(make_tenant) -> dict[str, str]:
    return bearer((await make_tenant()).secret_key)


async def test_preferences_round_trip_and_merge_rule(client, admin):
    pid = str(uuid.uuid4())
    r = await client.get(f"/v1/messaging/profiles/{pid}/preferences", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["channels"] == [] and r.json()["preferred_channel"] is None

    r = await client.patch(f"/v1/messaging/profiles/{pid}/preferences", headers=admin, json={
        "channels": {"email": False}, "timezone": "Asia/Shanghai", "preferred_channel": "sms",
        "quiet_hours": {"enabled": True, "start_minute": 1320, "end_minute": 480}})
    assert r.status_code == 200, r.text
    r = await client.patch(f"/v1/messaging/profiles/{pid}/preferences", headers=admin,
                           json={"channels": {"sms": True}})
    body = r.json()
    assert {c["channel"]: c["opted_in"] for c in body["channels"]} == {"email": False, "sms": True}
    assert (body["timezone"], body["preferred_channel"], body["quiet_hours"]["start_minute"]) == (
        "Asia/Shanghai", "sms", 1320)

    assert_problem(await client.patch(f"/v1/messaging/profiles/{pid}/preferences", headers=admin,
                                      json={"timezone": "Mars/Base"}), 400, "invalid_timezone")
    assert_problem(await client.patch(f"/v1/messaging/profiles/{pid}/preferences", headers=admin,
                                      json={"channels": {"pigeon": True}}), 422)


async def test_inbox_unsubscribe_and_suppressions(client, admin):
    pid = str(uuid.uuid4())
    r = await client.get(f"/v1/messaging/profiles/{pid}/inbox", headers=admin, params={"unread_only": True})
    assert r.status_code == 200 and r.json() == {"messages": [], "unread_count": 0, "next_cursor": None}
    r = await client.post(f"/v1/messaging/profiles/{pid}/inbox/read", headers=admin, json={"all": True})
    assert r.json() == {"marked": 0, "unread_count": 0}
    assert_problem(await client.post(f"/v1/messaging/profiles/{pid}/inbox/read", headers=admin, json={}), 422)

    first = await client.post(f"/v1/messaging/profiles/{pid}/unsubscribe", headers=admin, json={"channel": "email"})
    assert first.status_code == 200, first.text
    assert first.json() == {"profile_id": pid, "channel": "email", "already": False}
    again = await client.post(f"/v1/messaging/profiles/{pid}/unsubscribe", headers=admin, json={"channel": "email"})
    assert again.json()["already"] is True
    everything = await client.post(f"/v1/messaging/profiles/{pid}/unsubscribe", headers=admin)
    assert everything.json()["channel"] == "all"

    s1 = await client.post("/v1/messaging/suppressions", headers=admin,
                           json={"channel": "email", "address": "Bad@Example.com", "reason": "complaint"})
    assert s1.status_code == 200, s1.text
    s2 = await client.post("/v1/messaging/suppressions", headers=admin,
                           json={"channel": "email", "address": "bad@example.com", "reason": "complaint"})
    assert s1.json()["id"] == s2.json()["id"] and s1.json()["reason"] == "complaint"
    assert_problem(await client.post("/v1/messaging/suppressions", headers=admin, json={"channel": "sms"}), 422)


async def test_channel_secrets_are_never_returned(client, admin):
    body = {"provider": "smtp", "settings": SMTP, "secrets": {"username": "u", "password": "p"},
            "rate_limit_per_second": 5, "frequency_caps": [{"max_messages": 3, "window_hours": 168}],
            "fallbacks": [{"provider": "log"}]}
    r = await client.put("/v1/messaging/channels/email", headers=admin, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert "secrets" not in out and "password" not in r.text
    assert (out["channel"], out["provider"], out["enabled"], out["frequency_caps"]) == (
        "email", "smtp", True, [{"max_messages": 3, "window_hours": 168}])
    assert out["fallbacks"] == [{"provider": "log", "settings": {}, "rate_limit_per_second": 0}]
    assert_problem(await client.put("/v1/messaging/channels/email", headers=admin,
                                    json={**body, "provider": "pigeon"}), 400, "invalid_channel_config")
    assert_problem(await client.put("/v1/messaging/channels/email", headers=admin,
                                    json={**body, "frequency_caps": [{"max_messages": 0, "window_hours": 1}]}), 422)
    assert_problem(await client.put("/v1/messaging/channels/fax", headers=admin, json=body), 400, "invalid_request")


async def test_best_send_time_and_scopes(client, admin, make_tenant):
    pid = str(uuid.uuid4())
    r = await client.get(f"/v1/messaging/profiles/{pid}/best-send-time", headers=admin)
    assert r.status_code == 200, r.text
    assert 0 <= r.json()["best_hour_of_week"] <= 167 and r.json()["is_default"] is True
    tenant = await make_tenant()
    assert_problem(await client.get(f"/v1/messaging/profiles/{pid}/preferences",
                                    headers=bearer(tenant.write_key)), 403)
