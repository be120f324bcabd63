"""Journeys with the real messaging and loyalty services and a real SMTP server: a coupon issued by
one step shows in the next step's email, the email is opened through its tracking pixel, messaging's
message.opened reaches the journey over the bus and the "did-open" split takes the opened branch; a
person who never opens times out into the other branch. Each email arrives once."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import orjson
import pytest

from journey.background.events import make_consumer
from journey.background.worker import Effects, Worker
from loyalty.app import MIGRATIONS as LOYALTY_MIGRATIONS
from loyalty.app import build as build_loyalty
from loyalty.settings import LoyaltySettings
from mcloud.events.v1 import event_pb2, identity_events_pb2
from mcloud.journey.v1 import journey_pb2 as pb
from mcloud.loyalty.v1 import loyalty_pb2 as lpb
from mcloud.loyalty.v1 import loyalty_pb2_grpc
from mcloud.messaging.v1 import messaging_pb2 as mpb
from mcloud.messaging.v1 import messaging_pb2_grpc
from mcloud_common.bus import publish, streams_of
from mcloud_common.db import create_pool
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.ids import new_id_str
from mcloud_common.testing.services import running_service, wait_until
from messaging.app import MIGRATIONS as MESSAGING_MIGRATIONS
from messaging.app import build as build_messaging
from messaging.settings import MessagingSettings
from messaging.testing import SmtpSink


@pytest.fixture
async def loyalty(make_database, redis_url, clock):
    db = await make_database("loyalty", migrations=LOYALTY_MIGRATIONS)
    settings = LoyaltySettings(database_url=db, redis_url=redis_url, grpc_port=0)
    async with running_service(build_loyalty, settings, clock=clock, jobs=False) as (service, channel):
        yield loyalty_pb2_grpc.LoyaltyServiceStub(channel), service.port


@pytest.fixture
async def messaging(make_database, redis_url, clock):
    db = await make_database("messaging", migrations=MESSAGING_MIGRATIONS)
    settings = MessagingSettings(database_url=db, redis_url=redis_url, grpc_port=0, send_interval_seconds=0.05,
                                 identity_target="127.0.0.1:1")
    async with running_service(build_messaging, settings, clock=clock) as (service, channel):
        yield messaging_pb2_grpc.MessagingServiceStub(channel), service.port


@pytest.fixture
async def pool(journey_db):
    pool = await create_pool(journey_db)
    yield pool
    await pool.close()


WELCOME = {
    "entry": {"type": "api"},
    "reentry": {"mode": "never"},
    "goal": {"event": "Order Completed", "within": "P14D"},
    "exit_criteria": [{"event": "message.unsubscribed"}],
    "start": "coupon",
    "steps": [
        {"id": "coupon", "type": "issue_coupon", "campaign_id": "{campaign}", "next": "welcome"},
        {"id": "welcome", "type": "send", "channel": "email", "template": "{template}",
         "data": {"utm_campaign": "welcome"}, "next": "opened-wait"},
        {"id": "opened-wait", "type": "wait_for_event", "event": "message.opened", "timeout": "P1D",
         "next": "did-open", "timeout_next": "not-opened"},
        {"id": "did-open", "type": "condition", "branches": [{"when": {"opened": "welcome"}, "next": "tag-opened"}],
         "else": "not-opened"},
        {"id": "tag-opened", "type": "exit"},
        {"id": "not-opened", "type": "exit"},
    ],
}


async def test_send_wait_and_split_on_opened_with_the_coupon_in_the_email(api, pool, redis, clock, loyalty,
                                                                          messaging):
    lstub, lport = loyalty
    mstub, mport = messaging
    md = tenant_metadata(api.tenant)
    campaign = (await lstub.UpsertCouponCampaign(lpb.UpsertCouponCampaignRequest(campaign=lpb.CouponCampaign(
        name="Welcome 10%", discount_type=lpb.DISCOUNT_TYPE_PERCENT_OFF, percent_off=10, code_prefix="HELLO-",
        validity_days=30)), metadata=md)).campaign
    async with SmtpSink() as sink:
        await mstub.ConfigureChannel(mpb.ConfigureChannelRequest(config=mpb.ChannelConfig(
            channel=mpb.CHANNEL_EMAIL, provider="smtp", enabled=True,
            settings_json=orjson.dumps({"host": "127.0.0.1", "port": sink.port,
                                        "from_email": "hello@shop.example.com"}).decode())), metadata=md)
        template = (await mstub.UpsertTemplate(mpb.UpsertTemplateRequest(template=mpb.Template(
            name="Welcome", channel=mpb.CHANNEL_EMAIL, default_locale="en",
            variants=[mpb.TemplateVariant(locale="en", subject="Welcome {{ profile.first_name }}",
                                          body_html="<p>Your code: {{ coupon.code }} ({{ utm_campaign }})</p>")])),
            metadata=md)).template
        people = {}
        for name in ("opener", "ignorer"):
            pid = str(uuid.uuid4())
            ev = event_pb2.Event(id=new_id_str(), tenant_id=api.tenant, type="profile.identified", profile_id=pid,
                                 source="identity")
            ev.payload.Pack(identity_events_pb2.ProfileIdentified(profile_id=pid, traits_json=orjson.dumps(
                {"email": f"{name}@example.com", "first_name": name.title()}).decode()))
            await publish(redis, [ev], "identity", 4)
            people[name] = pid

        async def known(pid: str, name: str) -> bool:  # messaging has the contact from identity's event
            preview = await mstub.PreviewTemplate(mpb.PreviewTemplateRequest(
                template_id=template.id, profile_id=pid), metadata=md)
            return preview.subject == f"Welcome {name.title()}"

        for name, pid in people.items():
            await wait_until(lambda pid=pid, name=name: known(pid, name), message=f"messaging to know {name}")
        definition = orjson.loads(orjson.dumps(WELCOME).decode().replace("{campaign}", campaign.id)
                                  .replace("{template}", template.id))
        saved = await api.call("SaveJourneyDraft", pb.SaveJourneyDraftRequest(
            name="Welcome", definition_json=orjson.dumps(definition).decode()))
        assert not saved.errors, saved.errors
        jid = saved.journey.id
        await api.call("PublishJourney", pb.PublishJourneyRequest(journey_id=jid))

        group = f"journey-test-{uuid.uuid4().hex[:8]}"
        for stream in streams_of("messaging", 4):
            await redis.xgroup_create(stream, group, id="$", mkstream=True)
        consumer, reactions = make_consumer(pool, redis, clock, 4, group=group)
        consumer.block_ms = 0
        await reactions.journeys.refresh(pool, force=True)
        effects = Effects("127.0.0.1:1", f"127.0.0.1:{lport}", f"127.0.0.1:{mport}")
        worker = Worker(pool, clock, effects)
        try:
            for pid in people.values():
                await api.call("EnrollProfile", pb.EnrollProfileRequest(journey_id=jid, profile_id=pid))
            while await worker.run_once():
                pass
            await sink.wait_for(2)
            mail = {m["To"]: m for m in sink.messages}
            html = mail["opener@example.com"].get_body(("html",)).get_content()
            code = re.search(r"Your code: (HELLO-\S+) \(welcome\)", html).group(1)
            coupon = (await lstub.GetCoupon(lpb.GetCouponRequest(code=code), metadata=md)).coupon
            assert coupon.profile_id == people["opener"]

            # the opener's mail client loads the pixel; the gateway reports it to messaging
            pixel = re.search(r'/t/o/([^"]+)\.gif', html).group(1)
            await mstub.RecordMessageEvent(mpb.RecordMessageEventRequest(
                tracking_token=pixel, kind=mpb.MESSAGE_EVENT_KIND_OPENED), metadata=md)

            async def opened_seen():
                while await consumer.run_once():
                    pass
                page = await api.call("ListEnrollments", pb.ListEnrollmentsRequest(profile_id=people["opener"]))
                return page.enrollments[0].waiting_for_event == ""

            await wait_until(opened_seen, timeout=15, message="message.opened to reach the journey")
            while await worker.run_once():
                pass
            clock.advance(timedelta(days=1, seconds=1))
            while await worker.run_once():
                pass
            stats = await api.call("GetJourneyStats", pb.GetJourneyStatsRequest(journey_id=jid))
            outcomes = {(s.step_id, o.outcome): o.count for s in stats.steps for o in s.outcomes}
            assert outcomes[("opened-wait", "event")] == 1 and outcomes[("did-open", "yes")] == 1
            assert outcomes[("tag-opened", "exit")] == 1
            assert outcomes[("opened-wait", "timeout")] == 1 and outcomes[("not-opened", "exit")] == 1
            for name, pid in people.items():
                page = await api.call("ListEnrollments", pb.ListEnrollmentsRequest(profile_id=pid))
                assert page.enrollments[0].status == pb.ENROLLMENT_STATUS_COMPLETED, name
            assert len(sink.messages) == 2  # each person's email once
        finally:
            await effects.close()
