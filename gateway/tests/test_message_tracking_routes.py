"""The public message links (open pixel, click redirect, unsubscribe, preferences) and provider webhooks over
HTTP against a REAL messaging service. The module runs its own messaging service (no background jobs) so the
tests can put sent messages and channel secrets straight into its database."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator

import asyncpg
import grpc
import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud.messaging.v1 import messaging_pb2_grpc
from mcloud_common.db import asyncpg_dsn
from mcloud_common.grpc_client import make_channel, tenant_metadata
from mcloud_common.testing.services import running_service

PROBLEM = "application/problem+json"
PUBLIC_URL = "http://gateway"
SECRET = b"gateway-test-tracking-secret"


@pytest.fixture(scope="module")
async def messaging_database(make_database) -> str:
    from messaging.app import MIGRATIONS

    return await make_database("messaging", migrations=MIGRATIONS)


@pytest.fixture(scope="module")
async def messaging_port(messaging_database, redis_url, messaging_clock) -> AsyncIterator[int]:
    """Overrides conftest's: the same real service, without background jobs, with a known tracking secret."""
    from messaging.app import build
    from messaging.settings import MessagingSettings

    settings = MessagingSettings(database_url=messaging_database, redis_url=redis_url, grpc_port=0,
                                 public_url=PUBLIC_URL, tracking_secret=SECRET.decode())
    async with running_service(build, settings, clock=messaging_clock, jobs=False) as (service, _):
        yield service.port


@pytest.fixture
async def mdb(messaging_database) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(messaging_database))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def client(messaging_client):
    return messaging_client


def links():
    from messaging.domain.tracking import Links

    return Links(SECRET, PUBLIC_URL)


def path_of(url: str) -> str:
    return url.removeprefix(PUBLIC_URL)


async def sent_message(mdb, tenant: str, clock, *, provider_message_id: str = "") -> str:
    message_id = str(uuid.uuid4())
    now = clock.now()
    await mdb.execute(
        "INSERT INTO messages (tenant_id, id, profile_id, requested_channel, channel, template_id, status, "
        "idempotency_key, address, due_at, queued_at, sent_at, provider_message_id) "
        "VALUES ($1, $2, $3, 'email', 'email', $4, 'sent', $5, 'a@example.com', $6, $6, $6, $7)",
        tenant, message_id, str(uuid.uuid4()), str(uuid.uuid4()), f"k-{message_id}", now, provider_message_id)
    return message_id


async def status_of(mdb, message_id: str) -> str:
    return await mdb.fetchval("SELECT status FROM messages WHERE id = $1", message_id)


def assert_problem(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == code


async def test_open_pixel_records_the_open_and_always_answers_a_gif(client, mdb, messaging_clock):
    tenant = str(uuid.uuid4())
    message_id = await sent_message(mdb, tenant, messaging_clock)
    response = await client.get(path_of(links().open_pixel(tenant, message_id)), headers={"User-Agent": "Mail/1"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
    assert response.content.startswith(b"GIF89a") and "no-store" in response.headers["cache-control"]
    assert await status_of(mdb, message_id) == "opened"
    for bad in ("/t/o/garbage.gif", "/t/o/" + "x" * 100 + ".y.gif",
                path_of(links().open_pixel(tenant, message_id))[:-8] + "AAAA.gif"):
        response = await client.get(bad)
        assert response.status_code == 200 and response.headers["content-type"] == "image/gif"


async def test_click_redirects_to_the_signed_url_and_refuses_tampering(client, mdb, messaging_clock):
    tenant = str(uuid.uuid4())
    message_id = await sent_message(mdb, tenant, messaging_clock)
    target = "https://shop.example.com/p/1?item_id=sku-1"
    url = links().click(tenant, message_id, target)
    response = await client.get(path_of(url))
    assert response.status_code == 302 and response.headers["location"] == target
    assert await status_of(mdb, message_id) == "clicked"
    evil = links().click(tenant, message_id, "https://evil.example.com/")
    forged = path_of(evil).rsplit(".", 1)[0] + "." + url.rsplit(".", 1)[1]
    assert_problem(await client.get(forged), 400, "invalid_token")
    assert_problem(await client.get("/t/c/not-a-token"), 400, "invalid_token")


async def test_unsubscribe_page_and_one_click(client, messaging_port):
    tenant, profile = str(uuid.uuid4()), str(uuid.uuid4())
    path = path_of(links().unsubscribe(tenant, profile, str(uuid.uuid4()), "email"))
    page = await client.get(path)
    assert page.status_code == 200 and "<form method=\"post\">" in page.text and "email" in page.text
    bad = await client.get(path[:-4] + "AAAA")
    assert bad.status_code == 400 and "invalid" in bad.text
    stub = messaging_pb2_grpc.MessagingServiceStub(channel := make_channel(f"127.0.0.1:{messaging_port}"))
    try:
        await stub.Unsubscribe(pb.UnsubscribeRequest(profile_id=str(uuid.uuid4())), metadata=tenant_metadata(tenant))
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            pytest.skip("Unsubscribe is not implemented by the messaging service yet")
    finally:
        await channel.close()
    done = await client.post(path, content=b"List-Unsubscribe=One-Click",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert done.status_code == 200 and "unsubscribed" in done.text.lower()
    again = await client.post(path, content=b"List-Unsubscribe=One-Click",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert again.status_code == 200
    preferences = await client.get(path_of(links().preferences(tenant, profile, "", "email")))
    assert 'value="email">' in preferences.text and 'value="sms" checked' in preferences.text


async def test_preference_page_with_a_bad_token(client):
    tenant = str(uuid.uuid4())
    path = path_of(links().preferences(tenant, str(uuid.uuid4()), str(uuid.uuid4()), "email"))
    assert (await client.get(path[:-4] + "AAAA")).status_code == 400
    # a pixel token is not a preferences token
    assert (await client.get("/p/" + path_of(links().open_pixel(tenant, str(uuid.uuid4())))[5:-4])).status_code == 400


async def test_webhook_with_a_good_and_a_bad_signature(client, mdb, messaging_clock):
    tenant = str(uuid.uuid4())
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    await mdb.execute("INSERT INTO channel_configs (tenant_id, channel, provider, secrets, updated_at) "
                      "VALUES ($1, 'email', 'smtp', $2::jsonb, $3)", tenant,
                      orjson.dumps({"webhook_public_key": pem}).decode(), messaging_clock.now())
    message_id = await sent_message(mdb, tenant, messaging_clock, provider_message_id="sg-1")
    body = orjson.dumps([{"event": "delivered", "sg_event_id": "e1", "sg_message_id": "sg-1.filter0",
                          "timestamp": int(messaging_clock.now().timestamp())},
                         {"event": "open", "sg_event_id": "e2", "sg_message_id": "other.filter0",
                          "timestamp": int(messaging_clock.now().timestamp())}])
    timestamp = "1793613600"
    signature = base64.b64encode(private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    headers = {"X-Twilio-Email-Event-Webhook-Signature": signature,
               "X-Twilio-Email-Event-Webhook-Timestamp": timestamp, "Content-Type": "application/json"}
    url = f"/v1/webhooks/messaging/{tenant}/sendgrid"
    response = await client.post(url, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"recorded": 1, "duplicates": 0, "unknown": 1}
    assert await status_of(mdb, message_id) == "delivered"
    assert_problem(await client.post(url, content=body + b" ", headers=headers), 403, "invalid_signature")
    other_tenant = f"/v1/webhooks/messaging/{uuid.uuid4()}/sendgrid"
    assert_problem(await client.post(other_tenant, content=body, headers=headers), 403, "webhook_not_configured")
    assert (await client.post(f"/v1/webhooks/messaging/{tenant}/nope", content=body)).status_code == 400


async def test_preference_page_shows_and_saves_channel_opt_ins(client, mdb):
    tenant, profile = str(uuid.uuid4()), str(uuid.uuid4())
    path = path_of(links().preferences(tenant, profile, str(uuid.uuid4()), "email"))
    page = await client.get(path)
    assert page.status_code == 200, page.text
    for channel in ("email", "sms", "push"):
        assert f'value="{channel}" checked' in page.text  # nothing chosen yet: opted in
    saved = await client.post(path, content=b"channel=email&submitted=1",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert saved.status_code == 200 and "saved" in saved.text
    assert 'value="email" checked' in saved.text and 'value="sms" checked' not in saved.text
    again = await client.get(path)
    assert 'value="sms">' in again.text and 'value="push">' in again.text
