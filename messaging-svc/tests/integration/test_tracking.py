from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import timedelta

import grpc
import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mcloud.events.v1 import messaging_events_pb2 as ev
from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.bus import decode, shard_of
from mcloud_common.testing.services import wait_until
from mcloud_common.timestamps import from_timestamp, to_timestamp
from messaging.domain.tracking import Links
from messaging.settings import MessagingSettings

pytestmark = pytest.mark.without_jobs

SHARDS = MessagingSettings(database_url="postgresql://x/y", redis_url="redis://x").stream_shards


def links() -> Links:
    settings = MessagingSettings(database_url="postgresql://x/y", redis_url="redis://x")
    return Links(settings.tracking_secret.get_secret_value().encode(), settings.public_url)


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1].removesuffix(".gif")


async def sent_message(db, tenant: str, clock, *, profile_id: str | None = None, channel: str = "email",
                       address: str = "", provider_message_id: str = "") -> str:
    message_id = str(uuid.uuid4())
    profile_id = profile_id or str(uuid.uuid4())
    now = clock.now()
    await db.execute(
        "INSERT INTO messages (tenant_id, id, profile_id, requested_channel, channel, template_id, status, "
        "idempotency_key, journey_id, journey_version, enrollment_id, step_id, address, due_at, queued_at, sent_at, "
        "attempts, provider, provider_message_id) "
        "VALUES ($1, $2, $3, $4, $4, $5, 'sent', $6, 'journey-1', 3, 'enr-1', 'step-1', $7, $8, $8, $8, 1, 'smtp', $9)",
        tenant, message_id, profile_id, channel, str(uuid.uuid4()), f"key-{message_id}",
        address or f"{message_id[:8]}@example.com", now, provider_message_id)
    return message_id


async def published(redis, tenant: str, profile_id: str, type_: str) -> list:
    entries = await redis.xrange(f"events.messaging.{shard_of(profile_id, SHARDS)}")
    events = [decode(fields) for _, fields in entries]
    return [e for e in events if e.tenant_id == tenant and e.profile_id == profile_id and e.type == type_]


async def settled(db) -> None:
    await wait_until(lambda: db.fetchval("SELECT count(*) = 0 FROM outbox"), message="outbox drained")


async def record(api, **fields) -> pb.RecordMessageEventResponse:
    return await api.call("RecordMessageEvent", pb.RecordMessageEventRequest(**fields))


async def fails(call, code: grpc.StatusCode, error_code: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    assert dict(info.value.trailing_metadata() or ()).get("mcloud-error-code") == error_code


async def test_opening_twice_emits_message_opened_once_and_a_click_follows(api, db, redis, clock):
    message_id = await sent_message(db, api.tenant, clock)
    row = await db.fetchrow("SELECT profile_id FROM messages WHERE id = $1", message_id)
    profile = str(row["profile_id"])
    pixel = token_of(links().open_pixel(api.tenant, message_id))
    first = await record(api, tracking_token=pixel, user_agent="Mail/1.0")
    assert first.message.status == pb.MESSAGE_STATUS_OPENED and not first.duplicate
    assert first.message.attribution.journey_id == "journey-1" and first.message.attribution.journey_version == 3
    assert from_timestamp(first.message.opened_at) == clock.now() == from_timestamp(first.message.delivered_at)
    assert (await record(api, tracking_token=pixel)).duplicate  # the same minute
    clock.advance(minutes=5)
    again = await record(api, tracking_token=pixel)
    assert not again.duplicate and from_timestamp(again.message.opened_at) == clock.now() - timedelta(minutes=5)

    target = "https://shop.example.com/p/42?item_id=sku-42&rec_id=rec-7"
    click = await record(api, tracking_token=token_of(links().click(api.tenant, message_id, target)))
    assert click.redirect_url == target and click.message.status == pb.MESSAGE_STATUS_CLICKED
    await settled(db)
    [opened] = await published(redis, api.tenant, profile, "message.opened")
    payload = ev.MessageOpened()
    opened.payload.Unpack(payload)
    assert payload.message.message_id == message_id and payload.user_agent == "Mail/1.0"
    assert payload.message.journey_id == "journey-1" and payload.message.channel == "email"
    [clicked] = await published(redis, api.tenant, profile, "message.clicked")
    payload = ev.MessageClicked()
    clicked.payload.Unpack(payload)
    assert (payload.url, payload.item_id, payload.recommendation_id) == (target, "sku-42", "rec-7")
    # a late "delivered" does not move the message back and emits nothing
    late = await record(api, message_id=message_id, kind=pb.MESSAGE_EVENT_KIND_DELIVERED, provider_event_id="d-1")
    assert late.message.status == pb.MESSAGE_STATUS_CLICKED and not late.duplicate
    await settled(db)
    assert await published(redis, api.tenant, profile, "message.delivered") == []
    assert await db.fetchval("SELECT count(*) FROM message_events WHERE message_id = $1", message_id) == 4
    # the first open and the first click count once each towards engagement (UTC: Monday 10:00 = hour 10)
    assert [tuple(r) for r in await db.fetch(
        "SELECT hour_of_week, opens, clicks FROM engagement WHERE tenant_id = $1 AND profile_id = $2",
        api.tenant, profile)] == [(10, 1, 1)]


async def test_tokens_of_other_tenants_or_kinds_or_tampered_are_refused(api, db, clock):
    message_id = await sent_message(db, api.tenant, clock)
    other = str(uuid.uuid4())
    await fails(record(api, tracking_token=token_of(links().open_pixel(other, message_id))),
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_token")
    unsubscribe = token_of(links().unsubscribe(api.tenant, str(uuid.uuid4()), message_id, "email"))
    await fails(record(api, tracking_token=unsubscribe), grpc.StatusCode.INVALID_ARGUMENT, "invalid_token")
    pixel = token_of(links().open_pixel(api.tenant, message_id))
    await fails(record(api, tracking_token=pixel[:-3] + "AAA"), grpc.StatusCode.INVALID_ARGUMENT, "invalid_token")
    # a genuine token of a message that is gone: nothing recorded, but a click still redirects
    gone = await record(api, tracking_token=token_of(links().click(api.tenant, str(uuid.uuid4()), "https://a.b/")))
    assert gone.redirect_url == "https://a.b/" and not gone.HasField("message")
    await fails(record(api, message_id=str(uuid.uuid4()), kind=pb.MESSAGE_EVENT_KIND_OPENED, provider_event_id="x"),
                grpc.StatusCode.NOT_FOUND, "message_not_found")
    await fails(record(api, message_id=message_id, provider_event_id="x"), grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_kind")
    await fails(record(api, message_id=message_id, kind=pb.MESSAGE_EVENT_KIND_OPENED),
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_provider_event_id")
    await fails(record(api, message_id="nope", kind=pb.MESSAGE_EVENT_KIND_OPENED, provider_event_id="x"),
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_message_id")


async def test_duplicate_provider_event_ids_are_applied_once(api, db, redis, clock):
    message_id = await sent_message(db, api.tenant, clock, provider_message_id="prov-1")
    profile = str(await db.fetchval("SELECT profile_id FROM messages WHERE id = $1", message_id))
    fields = dict(provider_message_id="prov-1", kind=pb.MESSAGE_EVENT_KIND_DELIVERED, provider_event_id="evt-1",
                  occurred_at=to_timestamp(clock.now() + timedelta(seconds=3)))
    first = await record(api, **fields)
    assert first.message.id == message_id and first.message.status == pb.MESSAGE_STATUS_DELIVERED
    assert not first.duplicate
    second = await record(api, **fields)
    assert second.duplicate and second.message.status == pb.MESSAGE_STATUS_DELIVERED
    await settled(db)
    assert len(await published(redis, api.tenant, profile, "message.delivered")) == 1
    await fails(record(api, provider_message_id="unknown", kind=pb.MESSAGE_EVENT_KIND_DELIVERED,
                       provider_event_id="evt-2"), grpc.StatusCode.NOT_FOUND, "message_not_found")


async def test_a_hard_bounce_ends_the_message_and_suppresses_the_address(api, db, redis, clock):
    message_id = await sent_message(db, api.tenant, clock, address="Gone@Example.com")
    profile = str(await db.fetchval("SELECT profile_id FROM messages WHERE id = $1", message_id))
    bounced = await record(api, message_id=message_id, kind=pb.MESSAGE_EVENT_KIND_BOUNCED, provider_event_id="b-1",
                           hard_bounce=True, detail="550 5.1.1 no such user")
    assert bounced.message.status == pb.MESSAGE_STATUS_BOUNCED and bounced.message.error == "550 5.1.1 no such user"
    assert from_timestamp(bounced.message.ended_at) == clock.now()
    rows = await db.fetch("SELECT channel, address, reason FROM suppressions WHERE tenant_id = $1", api.tenant)
    assert [tuple(r) for r in rows] == [("email", "Gone@Example.com", "hard_bounce")]
    # an open after the bounce does not revive it; a second hard bounce for the address adds nothing
    late = await record(api, message_id=message_id, kind=pb.MESSAGE_EVENT_KIND_OPENED, provider_event_id="o-1")
    assert late.message.status == pb.MESSAGE_STATUS_BOUNCED
    other = await sent_message(db, api.tenant, clock, address="gone@example.com")
    await record(api, message_id=other, kind=pb.MESSAGE_EVENT_KIND_BOUNCED, provider_event_id="b-2", hard_bounce=True)
    assert await db.fetchval("SELECT count(*) FROM suppressions WHERE tenant_id = $1", api.tenant) == 1
    await settled(db)
    [event] = await published(redis, api.tenant, profile, "message.bounced")
    payload = ev.MessageBounced()
    event.payload.Unpack(payload)
    assert payload.hard_bounce and payload.detail == "550 5.1.1 no such user"
    # a soft bounce after an open does not end the message
    opened = await sent_message(db, api.tenant, clock)
    await record(api, message_id=opened, kind=pb.MESSAGE_EVENT_KIND_OPENED, provider_event_id="o-2")
    soft = await record(api, message_id=opened, kind=pb.MESSAGE_EVENT_KIND_BOUNCED, provider_event_id="b-3")
    assert soft.message.status == pb.MESSAGE_STATUS_OPENED and not soft.message.HasField("ended_at")


async def test_complaints_and_unsubscribes_suppress_and_emit_unsubscribed(api, db, redis, clock):
    complained = await sent_message(db, api.tenant, clock, address="spam@example.com")
    unsubscribed = await sent_message(db, api.tenant, clock, address="bye@example.com", channel="sms")
    await record(api, message_id=complained, kind=pb.MESSAGE_EVENT_KIND_COMPLAINED, provider_event_id="c-1")
    await record(api, message_id=unsubscribed, kind=pb.MESSAGE_EVENT_KIND_UNSUBSCRIBED, provider_event_id="u-1")
    rows = await db.fetch("SELECT channel, address, reason FROM suppressions WHERE tenant_id = $1 ORDER BY address",
                          api.tenant)
    assert [tuple(r) for r in rows] == [("sms", "bye@example.com", "unsubscribe"),
                                        ("email", "spam@example.com", "complaint")]
    await settled(db)
    profile = str(await db.fetchval("SELECT profile_id FROM messages WHERE id = $1", complained))
    [event] = await published(redis, api.tenant, profile, "message.unsubscribed")
    payload = ev.MessageUnsubscribed()
    event.payload.Unpack(payload)
    assert (payload.channel, payload.source, payload.profile_id) == ("email", "complaint", profile)


async def test_provider_webhooks_with_good_and_bad_signatures(api, db, clock):
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    await db.execute(
        "INSERT INTO channel_configs (tenant_id, channel, provider, secrets, updated_at) "
        "VALUES ($1, 'email', 'smtp', $2::jsonb, $3)", api.tenant,
        orjson.dumps({"webhook_public_key": base64.b64encode(der).decode(), "webhook_signing_key": "mg-key",
                      "webhook_secret": "pm"}).decode(), clock.now())
    ours = await sent_message(db, api.tenant, clock)
    theirs = await sent_message(db, api.tenant, clock, provider_message_id="sg-123")
    events = [{"event": "delivered", "sg_event_id": "e1", "sg_message_id": "x.filter", "mcloud_message_id": ours,
               "timestamp": int(clock.now().timestamp())},
              {"event": "open", "sg_event_id": "e2", "sg_message_id": "sg-123.filter0001", "timestamp": 1793613600},
              {"event": "delivered", "sg_event_id": "e3", "sg_message_id": "nobody.filter", "timestamp": 1793613600},
              {"event": "processed", "sg_event_id": "e4", "sg_message_id": "sg-123.filter0001"}]
    body = orjson.dumps(events)
    timestamp = "1793613600"
    signature = base64.b64encode(private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    headers = {"x-twilio-email-event-webhook-signature": signature,
               "x-twilio-email-event-webhook-timestamp": timestamp}
    call = pb.HandleProviderWebhookRequest(provider="sendgrid", headers=headers, body=body)
    result = await api.call("HandleProviderWebhook", call)
    assert (result.recorded, result.duplicates, result.unknown) == (2, 0, 1)
    again = await api.call("HandleProviderWebhook", call)
    assert (again.recorded, again.duplicates, again.unknown) == (0, 2, 1)
    statuses = dict(await db.fetch("SELECT id::text, status FROM messages WHERE tenant_id = $1", api.tenant))
    assert statuses == {ours: "delivered", theirs: "opened"}
    bad = pb.HandleProviderWebhookRequest(provider="sendgrid", headers=headers, body=body + b" ")
    await fails(api.call("HandleProviderWebhook", bad), grpc.StatusCode.PERMISSION_DENIED, "invalid_signature")

    signed = hmac.new(b"mg-key", b"1793613600tok", hashlib.sha256).hexdigest()
    mailgun = {"signature": {"timestamp": "1793613600", "token": "tok", "signature": signed},
               "event-data": {"id": "mg-1", "event": "clicked", "url": "https://shop.example.com/",
                              "timestamp": 1793613600, "message": {"headers": {"message-id": f"<{ours}@mcloud>"}}}}
    result = await api.call("HandleProviderWebhook", pb.HandleProviderWebhookRequest(
        provider="mailgun", body=orjson.dumps(mailgun)))
    assert result.recorded == 1
    assert await db.fetchval("SELECT status FROM messages WHERE id = $1", ours) == "clicked"
    mailgun["signature"]["signature"] = "0" * 64
    await fails(api.call("HandleProviderWebhook", pb.HandleProviderWebhookRequest(
        provider="mailgun", body=orjson.dumps(mailgun))), grpc.StatusCode.PERMISSION_DENIED, "invalid_signature")
    postmark = orjson.dumps({"RecordType": "Delivery", "MessageID": "sg-123", "DeliveredAt": "2026-11-02T10:00:00Z"})
    result = await api.call("HandleProviderWebhook", pb.HandleProviderWebhookRequest(
        provider="postmark", headers={"x-mcloud-webhook-secret": "pm"}, body=postmark))
    assert result.recorded == 1
    await fails(api.call("HandleProviderWebhook", pb.HandleProviderWebhookRequest(
        provider="postmark", headers={"x-mcloud-webhook-secret": "no"}, body=postmark)),
        grpc.StatusCode.PERMISSION_DENIED, "invalid_signature")
    await fails(api.call("HandleProviderWebhook", pb.HandleProviderWebhookRequest(
        provider="postmark", headers={"x-mcloud-webhook-secret": "pm"}, body=b"{oops")),
        grpc.StatusCode.INVALID_ARGUMENT, "invalid_webhook_body")
    await fails(api.call("HandleProviderWebhook", pb.HandleProviderWebhookRequest(provider="other", body=b"[]")),
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_provider")


async def test_webhooks_without_a_configured_key_are_denied(api):
    await fails(api.call("HandleProviderWebhook", pb.HandleProviderWebhookRequest(provider="sendgrid", body=b"[]")),
                grpc.StatusCode.PERMISSION_DENIED, "webhook_not_configured")


async def test_verify_link_token(api):
    profile, message = str(uuid.uuid4()), str(uuid.uuid4())
    answer = await api.call("VerifyLinkToken", pb.VerifyLinkTokenRequest(
        token=token_of(links().preferences(api.tenant, profile, message, "sms"))))
    assert (answer.profile_id, answer.message_id, answer.channel) == (profile, message, pb.CHANNEL_SMS)
    assert (await api.call("VerifyLinkToken", pb.VerifyLinkTokenRequest(
        token=token_of(links().unsubscribe(api.tenant, profile, message, "email"))))).channel == pb.CHANNEL_EMAIL
    await fails(api.call("VerifyLinkToken", pb.VerifyLinkTokenRequest(
        token=token_of(links().open_pixel(api.tenant, message)))), grpc.StatusCode.INVALID_ARGUMENT, "invalid_token")
    await fails(api.call("VerifyLinkToken", pb.VerifyLinkTokenRequest(token="x.y")),
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_token")


async def test_best_send_time_learns_from_opens(api, db, clock):
    profile = str(uuid.uuid4())
    await db.execute("INSERT INTO contacts (tenant_id, profile_id, timezone, synced_at) VALUES ($1, $2, $3, $4)",
                     api.tenant, profile, "Asia/Shanghai", clock.now())
    request = pb.GetBestSendTimeRequest(profile_id=profile)
    nothing = await api.call("GetBestSendTime", request)
    assert (nothing.best_hour_of_week, nothing.is_default, nothing.timezone) == (34, True, "Asia/Shanghai")
    assert nothing.best_channel == pb.CHANNEL_EMAIL and nothing.confidence == 0
    # T0 = Monday 18:00 Shanghai -> Tuesday 10:00 Shanghai = Tuesday 02:00 UTC
    assert from_timestamp(nothing.next_send_at) == clock.now() + timedelta(hours=16)

    # opens on three Wednesdays at 21:xx Shanghai (13:xx UTC), one message each
    for week in range(3):
        message_id = await sent_message(db, api.tenant, clock, profile_id=profile)
        at = clock.now() + timedelta(days=2 + 7 * week, hours=3, minutes=10)
        await record(api, message_id=message_id, kind=pb.MESSAGE_EVENT_KIND_OPENED, provider_event_id=f"o-{week}",
                     occurred_at=to_timestamp(at))
    learned = await api.call("GetBestSendTime", request)
    assert learned.best_hour_of_week == 2 * 24 + 21 and not learned.is_default
    assert learned.sample_size == 3 and 0 < learned.confidence < 1
    assert from_timestamp(learned.next_send_at) == clock.now() + timedelta(days=2, hours=3)

    # someone with no history gets the tenant's pattern, flagged as default
    stranger = await api.call("GetBestSendTime", pb.GetBestSendTimeRequest(profile_id=str(uuid.uuid4())))
    assert stranger.best_hour_of_week == 2 * 24 + 21 and stranger.is_default and stranger.timezone == "UTC"
    # a preferred channel in preferences wins; bad input is refused
    await db.execute("INSERT INTO preferences (tenant_id, profile_id, preferred_channel, timezone, updated_at) "
                     "VALUES ($1, $2, 'sms', 'Europe/Berlin', $3)", api.tenant, profile, clock.now())
    preferred = await api.call("GetBestSendTime", request)
    assert preferred.best_channel == pb.CHANNEL_SMS and preferred.timezone == "Europe/Berlin"
    await fails(api.call("GetBestSendTime", pb.GetBestSendTimeRequest(profile_id="x")),
                grpc.StatusCode.INVALID_ARGUMENT, "invalid_profile_id")
