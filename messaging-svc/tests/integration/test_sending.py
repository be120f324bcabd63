"""The send pipeline end to end on a real messaging service: identity's events make the contacts,
a real SMTP server (aiosmtpd) and real HTTP providers receive, the clock is controlled."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta

import grpc
import orjson
import pytest

from mcloud.events.v1 import event_pb2, identity_events_pb2
from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.bus import decode, publish
from mcloud_common.ids import new_id_str
from mcloud_common.testing.services import wait_until
from mcloud_common.timestamps import to_timestamp
from messaging.testing import HttpSink, SmtpSink

EMAIL = pb.Template(
    name="Welcome", channel=pb.CHANNEL_EMAIL, default_locale="en",
    variants=[
        pb.TemplateVariant(locale="en", subject="Welcome, {{ profile.first_name }}",
                           body_html="<p>Hi {{ profile.first_name }}, use {{ coupon.code }}.</p>"
                                     "<a href=\"https://shop.example.com/run\">Shop</a>"),
        pb.TemplateVariant(locale="zh-CN", subject="欢迎，{{ profile.first_name }}",
                           body_html="<p>{{ profile.first_name }}，优惠码 {{ coupon.code }}</p>"
                                     "<a href=\"https://shop.example.com/run\">选购</a>"),
    ])


async def identified(redis, tenant: str, profile: str, **traits) -> None:
    """identity says who the person is (as it does after an identify call)."""
    ev = event_pb2.Event(id=new_id_str(), tenant_id=tenant, type="profile.identified", profile_id=profile,
                         source="identity")
    traits_json = orjson.dumps(traits).decode()
    ev.payload.Pack(identity_events_pb2.ProfileIdentified(profile_id=profile, traits_json=traits_json))
    await publish(redis, [ev], "identity", 4)


async def person(api, db, redis, **traits) -> str:
    profile = str(uuid.uuid4())
    await identified(redis, api.tenant, profile, **traits)
    await wait_until(lambda: db.fetchval("SELECT 1 FROM contacts WHERE profile_id = $1", uuid.UUID(profile)),
                     message="the contact from identity's event")
    return profile


async def smtp_channel(api, sink: SmtpSink, **extra) -> None:
    await api.call("ConfigureChannel", pb.ConfigureChannelRequest(config=pb.ChannelConfig(
        channel=pb.CHANNEL_EMAIL, provider="smtp", enabled=True,
        settings_json=orjson.dumps({"host": "127.0.0.1", "port": sink.port, "from_email": "news@shop.example.com",
                                    "from_name": "Shop"}).decode(), **extra)))


async def template(api, t: pb.Template = EMAIL) -> str:
    return (await api.call("UpsertTemplate", pb.UpsertTemplateRequest(template=t))).template.id


async def send(api, profile: str, template_id: str, key: str, **fields) -> pb.Message:
    fields.setdefault("variables_json", orjson.dumps({"coupon": {"code": "RUN10"}}).decode())
    return (await api.call("SendMessage", pb.SendMessageRequest(
        profile_id=profile, template_id=template_id, idempotency_key=key, **fields))).message


async def settled(api, message_id: str, *statuses: int) -> pb.Message:
    async def done():
        m = (await api.call("GetMessage", pb.GetMessageRequest(message_id=message_id))).message
        return m if m.status in statuses else None

    return await wait_until(done, timeout=15, message=f"message {message_id} to reach {statuses}")


async def outbox_types(db, redis, tenant: str) -> list[str]:
    """Types of the events messaging published for `tenant` (once its outbox has drained onto the streams)."""
    await wait_until(lambda: db.fetchval("SELECT count(*) = 0 FROM outbox"), message="the outbox to drain")
    types = []
    for shard in range(4):
        for _, fields in await redis.xrange(f"events.messaging.{shard}"):
            event = decode(fields)
            if event.tenant_id == tenant:
                types.append(event.type)
    return types


async def test_a_personalised_email_arrives_with_unsubscribe_headers_and_tracked_links(api, db, redis):
    async with SmtpSink() as sink:
        await smtp_channel(api, sink)
        tid = await template(api)
        rachel = await person(api, db, redis, email="rachel@example.com", first_name="Rachel", locale="zh-CN")
        m = await send(api, rachel, tid, "welcome-1")
        assert m.status == pb.MESSAGE_STATUS_QUEUED
        await sink.wait_for(1)
        mail = sink.messages[0]
        assert mail["To"] == "rachel@example.com" and mail["Subject"] == "欢迎，Rachel"
        assert mail["Message-ID"] == f"<{m.id}@mcloud>"
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe = re.fullmatch(r"<(.+)>", mail["List-Unsubscribe"]).group(1)
        html = mail.get_body(("html",)).get_content()
        text = mail.get_body(("plain",)).get_content()
        assert "RUN10" in html and "RUN10" in text and "Rachel" in text
        assert "https://shop.example.com/run" not in html  # rewritten to a signed click link
        click = re.search(r'href="([^"]+/t/c/[^"]+)"', html).group(1)
        pixel = re.search(r'src="([^"]+/t/o/[^"]+)\.gif"', html).group(1)
        sent = await settled(api, m.id, pb.MESSAGE_STATUS_SENT)
        assert sent.locale == "zh-CN" and sent.provider == "smtp" and sent.attempts == 1

        # the open pixel and the click link, as the gateway reports them
        await api.call("RecordMessageEvent", pb.RecordMessageEventRequest(
            tracking_token=pixel.rsplit("/", 1)[1], kind=pb.MESSAGE_EVENT_KIND_OPENED))
        clicked = await api.call("RecordMessageEvent", pb.RecordMessageEventRequest(
            tracking_token=click.rsplit("/", 1)[1], kind=pb.MESSAGE_EVENT_KIND_CLICKED))
        assert clicked.redirect_url == "https://shop.example.com/run"
        assert clicked.message.status == pb.MESSAGE_STATUS_CLICKED
        types = await outbox_types(db, redis, api.tenant)
        assert types.count("message.queued") == 1 and types.count("message.sent") == 1
        assert types.count("message.opened") == 1 and types.count("message.clicked") == 1

        # one-click unsubscribe from the header: the next marketing email is not sent, and says why
        await api.call("Unsubscribe", pb.UnsubscribeRequest(token=unsubscribe.rsplit("/", 1)[1], source="one_click"))
        blocked = await settled(api, (await send(api, rachel, tid, "welcome-2")).id, pb.MESSAGE_STATUS_SUPPRESSED)
        assert blocked.block_reason == pb.BLOCK_REASON_UNSUBSCRIBED
        assert len(sink.messages) == 1
        assert (await outbox_types(db, redis, api.tenant)).count("message.unsubscribed") == 1


async def test_a_retry_storm_with_one_key_sends_one_email(api, db, redis):
    async with SmtpSink() as sink:
        await smtp_channel(api, sink)
        tid = await template(api)
        profile = await person(api, db, redis, email="storm@example.com", first_name="Sam")
        results = await asyncio.gather(*(send(api, profile, tid, "storm") for _ in range(25)))
        assert len({m.id for m in results}) == 1
        await settled(api, results[0].id, pb.MESSAGE_STATUS_SENT)
        await sink.wait_for(1)
        assert await db.fetchval("SELECT count(*) FROM messages") == 1
        assert len(sink.messages) == 1


async def test_a_temporary_smtp_failure_is_retried_later_and_sent_once(api, db, redis, clock):
    async with SmtpSink() as sink:
        await smtp_channel(api, sink)
        tid = await template(api)
        profile = await person(api, db, redis, email="retry@example.com", first_name="Ria")
        sink.fail_next(1, code=451)
        m = await send(api, profile, tid, "retry-1")

        async def failed_once():
            row = await db.fetchrow("SELECT attempts, error, status FROM messages WHERE id = $1", uuid.UUID(m.id))
            return row if row["attempts"] == 1 and row["error"] else None

        row = await wait_until(failed_once, message="the first attempt to fail")
        assert row["status"] == "queued" and "451" in row["error"]
        clock.advance(timedelta(seconds=5))  # past the first backoff (retry_base_seconds=1)
        sent = await settled(api, m.id, pb.MESSAGE_STATUS_SENT)
        assert sent.attempts == 2
        await sink.wait_for(1)
        assert len(sink.messages) == 1


@pytest.mark.parametrize("settings_overrides", [{"max_attempts": 2}])
async def test_after_the_last_attempt_a_message_is_dead_lettered_with_the_reason(api, db, redis, clock):
    async with SmtpSink() as sink:
        await smtp_channel(api, sink)
        tid = await template(api)
        profile = await person(api, db, redis, email="dead@example.com", first_name="Dee")
        sink.fail_next(10, code=421)
        m = await send(api, profile, tid, "dead-1")
        await wait_until(lambda: db.fetchval("SELECT attempts = 1 FROM messages WHERE id = $1", uuid.UUID(m.id)))
        clock.advance(timedelta(seconds=5))
        failed = await settled(api, m.id, pb.MESSAGE_STATUS_FAILED)
        assert failed.attempts == 2 and "421" in failed.error
        assert "message.failed" in await outbox_types(db, redis, api.tenant)


async def test_a_hard_bounce_suppresses_the_address(api, db, redis):
    async with SmtpSink() as sink:
        await smtp_channel(api, sink)
        tid = await template(api)
        profile = await person(api, db, redis, email="gone@example.com", first_name="Gone")
        sink.fail_next(1, code=550)
        bounced = await settled(api, (await send(api, profile, tid, "b-1")).id, pb.MESSAGE_STATUS_BOUNCED)
        assert bounced.attempts == 1
        again = await settled(api, (await send(api, profile, tid, "b-2")).id, pb.MESSAGE_STATUS_SUPPRESSED)
        assert again.block_reason == pb.BLOCK_REASON_SUPPRESSED and not sink.messages


async def test_quiet_hours_hold_a_marketing_email_until_morning_in_the_persons_zone(api, db, redis, clock):
    async with SmtpSink() as sink:
        await smtp_channel(api, sink)
        tid = await template(api)
        profile = await person(api, db, redis, email="night@example.com", first_name="Nia", timezone="Asia/Shanghai")
        await api.call("SetPreferences", pb.SetPreferencesRequest(preferences=pb.Preferences(
            profile_id=profile, quiet_hours=pb.QuietHours(enabled=True, start_minute=22 * 60, end_minute=8 * 60))))
        clock.advance(timedelta(hours=5))  # 15:00 UTC = 23:00 in Shanghai
        held = await send(api, profile, tid, "q-1")
        dropped = await send(api, profile, tid, "q-2", quiet_hours_behavior=pb.QUIET_HOURS_BEHAVIOR_DROP)
        receipt = await send(api, profile, tid, "q-3", transactional=True)
        assert (await settled(api, dropped.id, pb.MESSAGE_STATUS_DROPPED)).block_reason == pb.BLOCK_REASON_QUIET_HOURS
        await settled(api, receipt.id, pb.MESSAGE_STATUS_SENT)  # transactional: quiet hours do not apply

        async def held_until_morning():
            return await db.fetchval("SELECT due_at FROM messages WHERE id = $1 AND status = 'queued' "
                                     "AND attempts = 0 AND due_at > $2", uuid.UUID(held.id), clock.now())

        due = await wait_until(held_until_morning, message="the held message's new due time")
        assert due.isoformat() == "2026-11-03T00:00:00+00:00"  # 08:00 in Shanghai
        clock.set(due + timedelta(seconds=1))
        await settled(api, held.id, pb.MESSAGE_STATUS_SENT)
        await sink.wait_for(2)


async def test_frequency_caps_count_marketing_sends_across_journeys_and_skip_transactional(api, db, redis):
    async with SmtpSink() as sink:
        await smtp_channel(api, sink, frequency_caps=[pb.FrequencyCap(max_messages=2, window_hours=24)])
        tid = await template(api)
        profile = await person(api, db, redis, email="cap@example.com", first_name="Cap")
        first = [await send(api, profile, tid, f"cap-{i}", attribution=pb.Attribution(journey_id=f"j{i}"))
                 for i in range(2)]
        for m in first:
            await settled(api, m.id, pb.MESSAGE_STATUS_SENT)
        third = await settled(api, (await send(api, profile, tid, "cap-2")).id, pb.MESSAGE_STATUS_DROPPED)
        assert third.block_reason == pb.BLOCK_REASON_FREQUENCY_CAP
        receipt = await send(api, profile, tid, "cap-receipt", transactional=True)
        await settled(api, receipt.id, pb.MESSAGE_STATUS_SENT)
        await sink.wait_for(3)


async def test_sms_fails_over_to_the_second_provider_when_the_first_answers_5xx(api, db, redis):
    async with HttpSink() as first, HttpSink() as second:
        first.respond_with([503] * 10)
        await api.call("ConfigureChannel", pb.ConfigureChannelRequest(config=pb.ChannelConfig(
            channel=pb.CHANNEL_SMS, provider="http_json", enabled=True,
            settings_json=orjson.dumps({"url": first.url}).decode(),
            fallbacks=[pb.ProviderConfig(provider="http_json",
                                         settings_json=orjson.dumps({"url": second.url}).decode())])))
        sms = pb.Template(name="Code", channel=pb.CHANNEL_SMS, default_locale="en",
                          variants=[pb.TemplateVariant(locale="en", body_text="Hi {{ profile.first_name }}: RUN10")])
        tid = await template(api, sms)
        profile = await person(api, db, redis, phone="+8613800000000", first_name="Rachel")
        m = await settled(api, (await send(api, profile, tid, "sms-1")).id, pb.MESSAGE_STATUS_SENT)
        assert len(second.requests) == 1 and len(first.requests) >= 1
        assert second.requests[0].json["to"] == "+8613800000000"
        assert "Rachel" in second.requests[0].json["body"] and m.attempts == 1


async def test_in_app_messages_land_in_the_inbox_and_the_first_read_is_an_open(api, db, redis):
    inbox = pb.Template(name="Silver", channel=pb.CHANNEL_IN_APP, default_locale="en",
                        variants=[pb.TemplateVariant(locale="en", title="You are Silver now",
                                                     body_text="{{ profile.first_name }}, enjoy 5% off",
                                                     data_json='{"link_url": "app://tiers"}')])
    tid = await template(api, inbox)
    profile = await person(api, db, redis, first_name="Rachel")
    m = await settled(api, (await send(api, profile, tid, "in-app-1")).id, pb.MESSAGE_STATUS_SENT)
    page = await api.call("ListInbox", pb.ListInboxRequest(profile_id=profile))
    assert page.unread_count == 1 and page.messages[0].title == "You are Silver now"
    assert page.messages[0].body == "Rachel, enjoy 5% off" and page.messages[0].link_url == "app://tiers"
    await api.call("MarkInboxRead", pb.MarkInboxReadRequest(profile_id=profile, all=True))
    opened = (await api.call("GetMessage", pb.GetMessageRequest(message_id=m.id))).message
    assert opened.status == pb.MESSAGE_STATUS_OPENED
    assert (await outbox_types(db, redis, api.tenant)).count("message.opened") == 1


async def test_an_unconfigured_channel_or_an_unknown_person_is_explained_not_lost(api, db, redis):
    tid = await template(api)
    profile = await person(api, db, redis, first_name="NoMail")
    m = await settled(api, (await send(api, profile, tid, "nc-1")).id, pb.MESSAGE_STATUS_DROPPED)
    assert m.block_reason == pb.BLOCK_REASON_CHANNEL_DISABLED
    async with SmtpSink() as sink:
        await smtp_channel(api, sink)
        m = await settled(api, (await send(api, profile, tid, "nc-2")).id, pb.MESSAGE_STATUS_SUPPRESSED)
        assert m.block_reason == pb.BLOCK_REASON_NO_ADDRESS


async def test_bad_sends_are_invalid_argument_with_the_field_and_batches_answer_per_item(api, db, redis):
    tid = await template(api)
    for request, field in [
        (pb.SendMessageRequest(profile_id="x", template_id=tid, idempotency_key="k"), "profile_id"),
        (pb.SendMessageRequest(profile_id=str(uuid.uuid4()), template_id=tid), "idempotency_key"),
        (pb.SendMessageRequest(profile_id=str(uuid.uuid4()), template_id=tid, idempotency_key="k",
                               variables_json="[1]"), "variables_json"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.call("SendMessage", request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("SendMessage", pb.SendMessageRequest(profile_id=str(uuid.uuid4()), template_id=str(uuid.uuid4()),
                                                            idempotency_key="k"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    batch = await api.call("SendMessages", pb.SendMessagesRequest(messages=[
        pb.SendMessageRequest(profile_id=str(uuid.uuid4()), template_id=tid, idempotency_key="ok-1"),
        pb.SendMessageRequest(profile_id="nope", template_id=tid, idempotency_key="bad-1")]))
    assert batch.results[0].message.status == pb.MESSAGE_STATUS_QUEUED
    assert batch.results[1].error_code == "invalid_profile_id" and "messages[1]" in batch.results[1].error_detail


async def test_history_per_person_and_journey_newest_first(api, db, redis):
    tid = await template(api)
    profile = await person(api, db, redis, first_name="H")
    for i in range(3):
        await send(api, profile, tid, f"h-{i}", attribution=pb.Attribution(journey_id="j-1", step_id=f"s{i}"))
    page = await api.call("ListMessages", pb.ListMessagesRequest(profile_id=profile, page_size=2))
    assert [m.idempotency_key for m in page.messages] == ["h-2", "h-1"] and page.next_page_token
    rest = await api.call("ListMessages", pb.ListMessagesRequest(profile_id=profile, page_token=page.next_page_token))
    assert [m.idempotency_key for m in rest.messages] == ["h-0"]
    by_journey = await api.call("ListMessages", pb.ListMessagesRequest(journey_id="j-1"))
    assert len(by_journey.messages) == 3


async def test_test_send_goes_to_the_given_address_marked_test(api):
    async with SmtpSink() as sink:
        await smtp_channel(api, sink)
        tid = await template(api)
        m = (await api.call("TestSendTemplate", pb.TestSendTemplateRequest(
            template_id=tid, to_address="designer@example.com", locale="en",
            variables_json='{"profile": {"first_name": "Test"}, "coupon": {"code": "X"}}'))).message
        await settled(api, m.id, pb.MESSAGE_STATUS_SENT)
        await sink.wait_for(1)
        assert sink.messages[0]["To"] == "designer@example.com"
        assert sink.messages[0]["Subject"].startswith("[TEST] Welcome")


async def test_a_scheduled_send_waits_for_its_time(api, db, redis, clock):
    async with SmtpSink() as sink:
        await smtp_channel(api, sink)
        tid = await template(api)
        profile = await person(api, db, redis, email="later@example.com", first_name="Lou")
        at = to_timestamp(clock.now() + timedelta(hours=1))
        later = await send(api, profile, tid, "s-later", scheduled_at=at)
        now = await send(api, profile, tid, "s-now")
        await settled(api, now.id, pb.MESSAGE_STATUS_SENT)  # the sender has run since both were queued
        assert (await api.call("GetMessage", pb.GetMessageRequest(message_id=later.id))).message.status == \
            pb.MESSAGE_STATUS_QUEUED
        clock.advance(timedelta(hours=1))
        await settled(api, later.id, pb.MESSAGE_STATUS_SENT)
        await sink.wait_for(2)


async def test_withdrawn_consent_from_identity_blocks_marketing_but_not_receipts(api, db, redis):
    async with SmtpSink() as sink:
        await smtp_channel(api, sink)
        tid = await template(api)
        profile = await person(api, db, redis, email="noconsent@example.com", first_name="Nell")
        ev = event_pb2.Event(id=new_id_str(), tenant_id=api.tenant, type="consent.changed", profile_id=profile,
                             source="identity")
        ev.payload.Pack(identity_events_pb2.ConsentChanged(profile_id=profile, channel="email", purpose="marketing",
                                                           state="withdrawn"))
        await publish(redis, [ev], "identity", 4)
        await wait_until(lambda: db.fetchval("SELECT consent->>'email' = 'withdrawn' FROM contacts "
                                             "WHERE profile_id = $1", uuid.UUID(profile)))
        blocked = await settled(api, (await send(api, profile, tid, "c-1")).id, pb.MESSAGE_STATUS_SUPPRESSED)
        assert blocked.block_reason == pb.BLOCK_REASON_NO_CONSENT
        await settled(api, (await send(api, profile, tid, "c-2", transactional=True)).id, pb.MESSAGE_STATUS_SENT)
        await sink.wait_for(1)
