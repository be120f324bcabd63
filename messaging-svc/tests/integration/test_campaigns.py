"""Campaigns against a real identity service: people identified through identity's ingest reach
messaging as contacts over the bus, a segment picks them, and a campaign sends to every member in
batches, exactly once each, resuming without resending."""

from __future__ import annotations

import uuid
from datetime import timedelta

import orjson
import pytest

from identity.app import MIGRATIONS as IDENTITY_MIGRATIONS
from identity.app import build as build_identity
from identity.settings import IdentitySettings
from mcloud.identity.v1 import identity_pb2, identity_pb2_grpc
from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.grpc_client import make_channel, tenant_metadata
from mcloud_common.ids import new_id_str
from mcloud_common.testing.services import running_service, wait_until
from messaging.testing import SmtpSink

RUNNERS = 23


@pytest.fixture
async def identity_port(make_database, redis_url):
    db = await make_database("identity", migrations=IDENTITY_MIGRATIONS)
    settings = IdentitySettings(database_url=db, redis_url=redis_url, grpc_port=0)
    async with running_service(build_identity, settings) as (service, _):
        yield service.port


@pytest.fixture
def settings_overrides(identity_port):
    return {"identity_target": f"127.0.0.1:{identity_port}", "campaign_batch": 10}


async def test_a_campaign_reaches_every_segment_member_once_in_batches(api, db, clock, identity_port):
    channel = make_channel(f"127.0.0.1:{identity_port}")
    identity = identity_pb2_grpc.IdentityServiceStub(channel)
    md = tenant_metadata(api.tenant)
    try:
        await _campaign(api, db, clock, identity, md)
    finally:
        await channel.close()


async def _campaign(api, db, clock, identity, md) -> None:
    calls = [identity_pb2.InboundEvent(type=identity_pb2.CALL_TYPE_IDENTIFY, user_id=f"u{i}", message_id=new_id_str(),
                                       traits_json=orjson.dumps({"email": f"runner{i}@example.com",
                                                                 "first_name": f"Runner{i}",
                                                                 "club": "runners" if i < RUNNERS else "walkers"}
                                                                ).decode())
             for i in range(RUNNERS + 5)]
    await identity.IngestEvents(identity_pb2.IngestEventsRequest(events=calls), metadata=md)
    segment = (await identity.UpsertSegment(identity_pb2.UpsertSegmentRequest(segment=identity_pb2.Segment(
        name="Runners", rules_json=orjson.dumps({"trait": "club", "op": "eq", "value": "runners"}).decode())),
        metadata=md)).segment

    async def members():
        page = await identity.ListSegmentMembers(identity_pb2.ListSegmentMembersRequest(
            segment_id=segment.id, page_size=1000), metadata=md)
        return len(page.profile_ids) == RUNNERS

    await wait_until(members, timeout=20, message="the segment's backfill")
    async with SmtpSink() as sink:
        await api.call("ConfigureChannel", pb.ConfigureChannelRequest(config=pb.ChannelConfig(
            channel=pb.CHANNEL_EMAIL, provider="smtp", enabled=True,
            settings_json=orjson.dumps({"host": "127.0.0.1", "port": sink.port,
                                        "from_email": "club@shop.example.com"}).decode())))
        template = (await api.call("UpsertTemplate", pb.UpsertTemplateRequest(template=pb.Template(
            name="Marathon", channel=pb.CHANNEL_EMAIL, default_locale="en",
            variants=[pb.TemplateVariant(locale="en", subject="{{ profile.first_name }}: city marathon {{ date }}",
                                         body_text="See you at the start, {{ profile.first_name }}.")])))).template
        request = pb.SendCampaignRequest(name="City marathon", segment_id=segment.id, template_id=template.id,
                                         variables_json='{"date": "12.20"}', idempotency_key="marathon-1")
        campaign = (await api.call("SendCampaign", request)).campaign
        again = (await api.call("SendCampaign", request)).campaign
        assert again.id == campaign.id and campaign.status == pb.CAMPAIGN_STATUS_SCHEDULED

        async def completed():
            c = (await api.call("GetCampaign", pb.GetCampaignRequest(campaign_id=campaign.id))).campaign
            return c if c.status == pb.CAMPAIGN_STATUS_COMPLETED else None

        done = await wait_until(completed, timeout=20, message="the campaign to be queued")
        assert done.audience_size == RUNNERS and done.queued == RUNNERS and done.blocked == 0
        await sink.wait_for(RUNNERS, timeout=20)
        to = sorted(m["To"] for m in sink.messages)
        assert to == sorted(f"runner{i}@example.com" for i in range(RUNNERS))
        assert any(m["Subject"] == "Runner3: city marathon 12.20" for m in sink.messages)

        # a runner that dies mid-campaign resumes from its cursor; the (campaign, person) keys send nothing twice
        await db.execute("UPDATE campaigns SET status = 'running', cursor = '', lease_until = NULL WHERE id = $1",
                         uuid.UUID(campaign.id))
        clock.advance(timedelta(seconds=1))
        await wait_until(completed, timeout=20, message="the resumed campaign")
        history = await api.call("ListMessages", pb.ListMessagesRequest(campaign_id=campaign.id, page_size=100))
        assert len(history.messages) == RUNNERS
        assert len(sink.messages) == RUNNERS


async def test_a_campaign_to_a_segment_that_does_not_exist_fails_once_instead_of_retrying_forever(api, db):
    template = (await api.call("UpsertTemplate", pb.UpsertTemplateRequest(template=pb.Template(
        name="Ghost", channel=pb.CHANNEL_EMAIL, default_locale="en",
        variants=[pb.TemplateVariant(locale="en", subject="Hi", body_text="Hi")])))).template
    campaign = (await api.call("SendCampaign", pb.SendCampaignRequest(
        name="Nobody", segment_id=str(uuid.uuid4()), template_id=template.id))).campaign

    async def failed():
        c = (await api.call("GetCampaign", pb.GetCampaignRequest(campaign_id=campaign.id))).campaign
        return c if c.status == pb.CAMPAIGN_STATUS_FAILED else None

    done = await wait_until(failed, timeout=20, message="the campaign to fail")
    assert done.queued == 0
    row = await db.fetchrow("SELECT error, lease_until FROM campaigns WHERE id = $1", uuid.UUID(campaign.id))
    assert "segment" in row["error"] and row["lease_until"] is None
