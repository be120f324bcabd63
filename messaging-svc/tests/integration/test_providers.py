"""Providers against real servers: aiosmtpd (SmtpSink), a local HTTP server (HttpSink) and Valkey."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime

import pytest

from mcloud_common.clock import ManualClock
from mcloud_common.embedded import free_port
from messaging.providers import (
    ChannelSetup,
    Delivery,
    Dispatcher,
    Outgoing,
    PermanentFailure,
    ProviderSpec,
    RateLimiter,
    TemporaryFailure,
)
from messaging.testing import HttpSink, Reply, SmtpSink

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def dispatcher(redis, clock):
    d = Dispatcher(redis, clock=clock)
    try:
        yield d
    finally:
        await d.close()


@pytest.fixture
def tenant() -> str:
    return str(uuid.uuid4())


def smtp_setup(sink: SmtpSink, version: str = "v1", **settings) -> ChannelSetup:
    base = {"host": "127.0.0.1", "port": sink.port, "from_email": "news@shop.example", "from_name": "Shop"}
    return ChannelSetup("email", ProviderSpec("smtp", {**base, **settings}), version=version)


def email(tenant: str, to: str = "ana@example.com", **kw) -> Outgoing:
    fields = {"subject": "Weekly offers", "body_text": "Hello Ana", "body_html": "<p>Hello <b>Ana</b></p>",
              "headers": {"List-Unsubscribe": "<https://t.example/u/tok>, <mailto:u@t.example>",
                          "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}}
    fields.update(kw)
    return Outgoing(str(uuid.uuid4()), tenant, "email", to, **fields)


def sms(tenant: str, to: str = "+8613800000000", body: str = "Your code is 1234") -> Outgoing:
    return Outgoing(str(uuid.uuid4()), tenant, "sms", to, body_text=body)


# --------------------------------------------------------------------------------------------------- email


async def test_email_has_headers_parts_and_message_id(dispatcher, tenant):
    async with SmtpSink() as sink:
        out = email(tenant, subject="Grüße, Ana")
        delivery = await dispatcher.send(tenant, smtp_setup(sink, reply_to="help@shop.example"), out)
        await sink.wait_for(1)
    assert delivery == Delivery("smtp", f"{out.message_id}@mcloud")
    assert sink.envelopes == [("news@shop.example", ["ana@example.com"])]
    msg = sink.messages[0]
    assert msg["Message-ID"] == f"<{out.message_id}@mcloud>"
    assert msg["From"].addresses[0].display_name == "Shop"
    assert msg["From"].addresses[0].addr_spec == "news@shop.example"
    assert msg["To"] == "ana@example.com"
    assert msg["Subject"] == "Grüße, Ana"
    assert msg["Reply-To"] == "help@shop.example"
    assert msg["Date"].datetime.tzinfo is not None
    assert msg["List-Unsubscribe"] == "<https://t.example/u/tok>, <mailto:u@t.example>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg.get_body(("plain",)).get_content().strip() == "Hello Ana"
    assert msg.get_body(("html",)).get_content().strip() == "<p>Hello <b>Ana</b></p>"


async def test_internationalised_address_goes_with_smtputf8(dispatcher, tenant):
    async with SmtpSink() as sink:
        await dispatcher.send(tenant, smtp_setup(sink), email(tenant, "josé@exámple.com"))
        await sink.wait_for(1)
    assert sink.envelopes[0][1] == ["josé@exámple.com"]
    assert sink.messages[0]["To"] == "josé@exámple.com"


async def test_smtp_connections_are_pooled_and_reused(dispatcher, tenant):
    async with SmtpSink(keep=False) as sink:
        setup = smtp_setup(sink)
        await asyncio.gather(*(dispatcher.send(tenant, setup, email(tenant, f"u{i}@example.com")) for i in range(40)))
        await dispatcher.send(tenant, setup, email(tenant))
        await sink.wait_for(41)
        assert sink.connections <= 4
        # a new setup version gets a new pool; the old one is closed
        await dispatcher.send(tenant, smtp_setup(sink, version="v2"), email(tenant))
        await sink.wait_for(42)
        assert sink.connections <= 5


async def test_smtp_temporary_and_permanent_refusals(dispatcher, tenant):
    async with SmtpSink() as sink:
        setup = smtp_setup(sink)
        sink.fail_next(1, code=451)
        with pytest.raises(TemporaryFailure) as temp:
            await dispatcher.send(tenant, setup, email(tenant))
        assert "451" in temp.value.detail
        sink.fail_next(1, code=550, stage="rcpt")
        with pytest.raises(PermanentFailure) as bounce:
            await dispatcher.send(tenant, setup, email(tenant, "ghost@example.com"))
        assert bounce.value.hard_bounce and bounce.value.provider == "smtp"
        sink.fail_next(1, code=550)  # at DATA with 5.1.1
        with pytest.raises(PermanentFailure) as data_bounce:
            await dispatcher.send(tenant, setup, email(tenant))
        assert data_bounce.value.hard_bounce
        sink.fail_next(1, code=554)  # content refused: permanent, not about the recipient
        with pytest.raises(PermanentFailure) as refused:
            await dispatcher.send(tenant, setup, email(tenant))
        assert not refused.value.hard_bounce
        # the same pooled connection keeps working after the refusals
        await dispatcher.send(tenant, setup, email(tenant))
        await sink.wait_for(1)
        assert sink.connections == 1


async def test_smtp_server_down_is_temporary_and_a_dropped_pool_connection_recovers(dispatcher, tenant):
    port = free_port()
    setup = ChannelSetup("email", ProviderSpec("smtp", {"host": "127.0.0.1", "port": port,
                                                        "from_email": "n@shop.example"}), version="x")
    with pytest.raises(TemporaryFailure):
        await dispatcher.send(tenant, setup, email(tenant))
    async with SmtpSink() as sink:
        setup = smtp_setup(sink)
        await dispatcher.send(tenant, setup, email(tenant))
        sink.drop_connections()  # the server closed the idle session
        await dispatcher.send(tenant, setup, email(tenant))
        await sink.wait_for(2)
        assert sink.connections == 2


async def test_idle_pooled_connections_are_pruned(dispatcher, tenant, monkeypatch):
    from messaging.providers import email as email_module

    async with SmtpSink(keep=False) as sink:
        setup = smtp_setup(sink)
        await dispatcher.send(tenant, setup, email(tenant))
        provider = dispatcher.provider(tenant, setup, 0)
        assert provider.prune() == 0
        monkeypatch.setattr(email_module, "IDLE_SECONDS", 0.0)
        assert provider.prune() == 1
        await dispatcher.send(tenant, setup, email(tenant))
        await sink.wait_for(2)
        assert sink.connections == 2


async def test_log_provider_accepts_everything(dispatcher, tenant):
    setup = ChannelSetup("email", ProviderSpec("log"))
    out = email(tenant)
    assert await dispatcher.send(tenant, setup, out) == Delivery("log", f"log-{out.message_id}")


# --------------------------------------------------------------------------------------------------- http


async def test_failover_to_the_next_provider_on_503(dispatcher, tenant):
    async with HttpSink() as first, HttpSink() as second:
        first.respond_with([503])
        second.respond_with([(201, {"sid": "SM123", "status": "queued"})])
        setup = ChannelSetup("sms", ProviderSpec("http_json", {"url": first.url + "/send", "sender": "SHOP"}),
                             (ProviderSpec("twilio", {"account_sid": "AC1", "from": "+15550001",
                                                      "base_url": second.url}, {"auth_token": "tok"}),))
        out = sms(tenant)
        delivery = await dispatcher.send(tenant, setup, out)
    assert delivery == Delivery("twilio", "SM123")
    assert first.requests[0].path == "/send"
    assert first.requests[0].json == {"to": out.to, "body": out.body_text, "sender": "SHOP",
                                      "message_id": out.message_id}
    assert len(second.requests) == 1


async def test_twilio_request_shape_and_recipient_errors(dispatcher, tenant):
    async with HttpSink() as sink:
        sink.respond_with([(201, {"sid": "SMabc"}), (400, {"code": 21211, "message": "Invalid 'To'"}),
                           (400, {"code": 20003, "message": "Authenticate"})])
        setup = ChannelSetup("sms", ProviderSpec("twilio", {"account_sid": "AC9", "from": "+15550001",
                                                            "base_url": sink.url}, {"auth_token": "secret"}))
        out = sms(tenant)
        assert await dispatcher.send(tenant, setup, out) == Delivery("twilio", "SMabc")
        with pytest.raises(PermanentFailure) as bad_number:
            await dispatcher.send(tenant, setup, sms(tenant, "+1"))
        with pytest.raises(PermanentFailure) as bad_auth:
            await dispatcher.send(tenant, setup, sms(tenant))
    request = sink.requests[0]
    assert request.method == "POST"
    assert request.path == "/2010-04-01/Accounts/AC9/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"AC9:secret").decode()
    assert request.form == {"To": out.to, "From": "+15550001", "Body": out.body_text}
    assert bad_number.value.hard_bounce
    assert not bad_auth.value.hard_bounce


async def test_fcm_request_shape_and_unregistered_token(dispatcher, tenant):
    async with HttpSink() as sink:
        sink.respond_with([(200, {"name": "projects/shop/messages/0:1"}),
                           (404, {"error": {"status": "NOT_FOUND", "details": [{"errorCode": "UNREGISTERED"}]}})])
        setup = ChannelSetup("push", ProviderSpec("fcm", {"project_id": "shop", "base_url": sink.url},
                                                  {"access_token": "ya29.token"}))
        out = Outgoing(str(uuid.uuid4()), tenant, "push", "device-token-1", title="Sale", body_text="50% off",
                       data={"deeplink": "shop://sale", "count": 3})
        assert await dispatcher.send(tenant, setup, out) == Delivery("fcm", "projects/shop/messages/0:1")
        with pytest.raises(PermanentFailure) as gone:
            await dispatcher.send(tenant, setup, out)
    request = sink.requests[0]
    assert request.path == "/v1/projects/shop/messages:send"
    assert request.headers["authorization"] == "Bearer ya29.token"
    assert request.json == {"message": {"token": "device-token-1", "notification": {"title": "Sale", "body": "50% off"},
                                        "data": {"deeplink": "shop://sale", "count": "3"}}}
    assert gone.value.hard_bounce


async def test_push_http_json_and_generated_ids(dispatcher, tenant):
    async with HttpSink() as sink:
        sink.respond_with([(200, b"")])
        setup = ChannelSetup("push", ProviderSpec("http_json", {"url": sink.url + "/push"}, {"api_key": "k1"}))
        out = Outgoing(str(uuid.uuid4()), tenant, "push", "tok", title="T", body_text="B", data={"a": 1})
        delivery = await dispatcher.send(tenant, setup, out)
    assert delivery.provider == "http_json" and delivery.provider_message_id
    assert sink.requests[0].json == {"to": "tok", "title": "T", "body": "B", "data": {"a": 1},
                                     "message_id": out.message_id}
    assert sink.requests[0].headers["authorization"] == "Bearer k1"
    assert sink.requests[0].headers["idempotency-key"] == out.message_id


async def test_webhook_signature_verifies_and_retry_after_is_honoured(dispatcher, tenant):
    async with HttpSink() as sink:
        sink.respond_with([200, Reply(429, None, {"Retry-After": "12"})])
        setup = ChannelSetup("webhook", ProviderSpec("webhook", {}, {"signing_secret": "whsec"}))
        out = Outgoing(str(uuid.uuid4()), tenant, "webhook", sink.url + "/hook", data={"event": "coupon", "n": 1})
        await dispatcher.send(tenant, setup, out)
        with pytest.raises(TemporaryFailure) as throttled:
            await dispatcher.send(tenant, setup, out)
    request = sink.requests[0]
    assert request.path == "/hook"
    assert json.loads(request.body) == {"event": "coupon", "n": 1}
    expected = "sha256=" + hmac.new(b"whsec", request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["x-mcloud-signature"], expected)
    assert request.headers["x-mcloud-message-id"] == out.message_id
    assert throttled.value.retry_after == 12


async def test_all_providers_failing_is_temporary_and_permanent_ones_fail_over(dispatcher, tenant):
    async with HttpSink() as a, HttpSink() as b:
        a.respond_with([500, 401])
        b.respond_with([Reply(503, None, {"Retry-After": "5"})])
        setup = ChannelSetup("sms", ProviderSpec("http_json", {"url": a.url}),
                             (ProviderSpec("http_json", {"url": b.url}),))
        with pytest.raises(TemporaryFailure) as both:
            await dispatcher.send(tenant, setup, sms(tenant))
        assert both.value.retry_after == 5
        # 401 (our configuration is wrong there) is permanent but not about the recipient: the fallback gets it
        delivery = await dispatcher.send(tenant, setup, sms(tenant))
        assert delivery.provider == "http_json" and len(b.requests) == 2
        # with nothing temporary, the permanent refusal is the answer
        a.respond_with([400])
        b.respond_with([422])
        with pytest.raises(PermanentFailure):
            await dispatcher.send(tenant, setup, sms(tenant))


async def test_transport_error_is_temporary(dispatcher, tenant):
    setup = ChannelSetup("sms", ProviderSpec("http_json", {"url": f"http://127.0.0.1:{free_port()}/x"}))
    with pytest.raises(TemporaryFailure):
        await dispatcher.send(tenant, setup, sms(tenant))


# --------------------------------------------------------------------------------------------------- circuit


async def test_circuit_opens_skips_the_provider_and_half_opens_later(dispatcher, tenant, clock):
    async with HttpSink() as flaky:
        flaky.default = Reply(503)
        setup = ChannelSetup("sms", ProviderSpec("http_json", {"url": flaky.url}), (ProviderSpec("log"),))
        for _ in range(5):
            assert (await dispatcher.send(tenant, setup, sms(tenant))).provider == "log"
        assert len(flaky.requests) == 5
        for _ in range(3):  # open: not even tried
            assert (await dispatcher.send(tenant, setup, sms(tenant))).provider == "log"
        assert len(flaky.requests) == 5
        only_flaky = ChannelSetup("sms", setup.primary)
        with pytest.raises(TemporaryFailure) as skipped:
            await dispatcher.send(tenant, only_flaky, sms(tenant))
        assert "circuit open" in skipped.value.detail and skipped.value.retry_after == 30
        # other tenants have their own circuit
        other = str(uuid.uuid4())
        assert (await dispatcher.send(other, setup, sms(other))).provider == "log"
        assert len(flaky.requests) == 6
        clock.advance(seconds=30)  # half-open: one trial, which fails -> open again
        assert (await dispatcher.send(tenant, setup, sms(tenant))).provider == "log"
        assert len(flaky.requests) == 7
        assert (await dispatcher.send(tenant, setup, sms(tenant))).provider == "log"
        assert len(flaky.requests) == 7
        clock.advance(seconds=30)  # the next trial succeeds: closed
        flaky.default = Reply(200)
        assert (await dispatcher.send(tenant, setup, sms(tenant))).provider == "http_json"
        assert (await dispatcher.send(tenant, setup, sms(tenant))).provider == "http_json"
        assert len(flaky.requests) == 9


# --------------------------------------------------------------------------------------------------- rate limit


async def test_token_bucket_holds_to_the_rate(redis, tenant):
    limiter = RateLimiter(redis, max_wait=0)
    key = limiter.key(tenant, "sms", "twilio")
    t = 1_000_000
    grants = [await limiter.take(key, 5, now_ms=t) for _ in range(7)]
    assert [g.granted for g in grants] == [True] * 5 + [False] * 2
    assert grants[4].tokens == 0 and grants[5].wait == 0.2
    # over 10 simulated seconds, asking every 10 ms, exactly 5 per second more get through
    granted = 0
    for step in range(1, 1001):
        granted += (await limiter.take(key, 5, now_ms=t + step * 10)).granted
    assert granted == 50
    # an idle bucket refills to its capacity, not beyond
    burst = [(await limiter.take(key, 5, now_ms=t + 60_000)).granted for _ in range(8)]
    assert burst.count(True) == 5


async def test_waiters_reserve_tokens_in_order(redis, tenant):
    limiter = RateLimiter(redis, max_wait=1.0)
    key = limiter.key(tenant, "email", "smtp")
    t = 2_000_000
    grants = [await limiter.take(key, 10, now_ms=t) for _ in range(14)]
    assert all(g.granted for g in grants[:10]) and all(g.wait == 0 for g in grants[:10])
    assert [g.wait for g in grants[10:]] == [0.1, 0.2, 0.3, 0.4]  # reserved, due one after the other
    assert grants[13].tokens == -4
    assert not (await limiter.take(key, 10, now_ms=t, max_wait=0.45)).granted


async def test_dispatcher_applies_the_rate_limit(redis, tenant):
    dispatcher = Dispatcher(redis, max_wait=0)
    try:
        async with HttpSink() as sink:
            setup = ChannelSetup("sms", ProviderSpec("http_json", {"url": sink.url}, rate_limit_per_second=1),
                                 (ProviderSpec("log"),))
            await dispatcher.send(tenant, setup, sms(tenant))
            with pytest.raises(TemporaryFailure) as limited:  # no spill-over to the fallback: retry later
                await dispatcher.send(tenant, setup, sms(tenant))
            assert 0 < limited.value.retry_after <= 1
            assert len(sink.requests) == 1
            unlimited = ChannelSetup("sms", ProviderSpec("http_json", {"url": sink.url + "/u"}))
            for _ in range(5):
                await dispatcher.send(tenant, unlimited, sms(tenant))
            assert len(sink.requests) == 6
    finally:
        await dispatcher.close()


async def test_acquire_waits_for_a_near_token(redis, tenant):
    limiter = RateLimiter(redis, max_wait=2.0)
    assert await limiter.acquire(tenant, "push", "fcm", 0) == 0
    waits = [await limiter.acquire(tenant, "push", "fcm", 2) for _ in range(3)]
    assert waits[:2] == [0, 0]
    assert 0 < waits[2] <= 0.5  # the third token was reserved and waited for, not refused
