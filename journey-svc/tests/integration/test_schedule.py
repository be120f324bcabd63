"""Scheduled entries: a daily journey at 09:00 for a segment, in each person's time zone; each
occurrence fanned out once."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from journey.background import schedule
from journey.background.worker import Effects, Worker
from mcloud.identity.v1 import identity_pb2 as ipb
from mcloud.journey.v1 import journey_pb2 as pb
from mcloud_common.db import create_pool
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.testing.services import running_service, wait_until


@pytest.fixture
async def identity(make_database, redis_url):
    from identity.app import MIGRATIONS, build
    from identity.settings import IdentitySettings
    from mcloud.identity.v1 import identity_pb2_grpc

    db = await make_database("identity", migrations=MIGRATIONS)
    settings = IdentitySettings(database_url=db, redis_url=redis_url, grpc_port=0)
    async with running_service(build, settings) as (service, channel):  # with its segment worker
        yield identity_pb2_grpc.IdentityServiceStub(channel), service.port


def test_occurrences_start_at_the_first_to_begin_after_publishing():
    entry = {"type": "schedule", "every": "daily", "at": "09:00", "segment_id": "s"}
    published = datetime(2026, 11, 1, 9, tzinfo=UTC)
    assert schedule.occurrences(entry, published, datetime(2026, 11, 1, 18, tzinfo=UTC)) == []
    nov2 = datetime(2026, 11, 2).date()
    assert schedule.occurrences(entry, published, datetime(2026, 11, 1, 20, tzinfo=UTC)) == [nov2]
    weekly = {**entry, "every": "weekly", "weekday": 1}  # Mondays: 2026-11-02 is one
    assert schedule.occurrences(weekly, published, datetime(2026, 11, 1, 20, tzinfo=UTC)) == [nov2]
    assert schedule.occurrences({**weekly, "weekday": 3}, published, datetime(2026, 11, 1, 20, tzinfo=UTC)) == []


async def test_a_daily_journey_runs_at_nine_in_each_persons_time_zone(api, identity, journey_db, clock):
    ident, port = identity
    md = tenant_metadata(api.tenant)
    people = {}
    for user, tz in (("u-sh", "Asia/Shanghai"), ("u-ny", "America/New_York")):
        r = await ident.IngestEvents(ipb.IngestEventsRequest(events=[ipb.InboundEvent(
            type=ipb.CALL_TYPE_IDENTIFY, message_id=f"m-{user}", user_id=user, channel="web",
            traits_json=orjson.dumps({"timezone": tz, "vip": True}).decode())]), metadata=md)
        people[user] = r.profile_ids[0]
    segment = (await ident.UpsertSegment(ipb.UpsertSegmentRequest(segment=ipb.Segment(
        name="VIP", rules_json=orjson.dumps({"trait": "vip", "op": "eq", "value": True}).decode())),
        metadata=md)).segment

    async def members():
        page = await ident.ListSegmentMembers(ipb.ListSegmentMembersRequest(segment_id=segment.id), metadata=md)
        return len(page.profile_ids) == 2

    await wait_until(members, timeout=20, message="segment evaluated")
    definition = {"entry": {"type": "schedule", "every": "daily", "at": "09:00", "segment_id": segment.id},
                  "start": "tag", "steps": [{"id": "tag", "type": "update_profile", "add_tags": ["morning-mail"]}]}
    saved = await api.call("SaveJourneyDraft", pb.SaveJourneyDraftRequest(
        name="Daily", definition_json=orjson.dumps(definition).decode()))
    assert not saved.errors, saved.errors
    await api.call("PublishJourney", pb.PublishJourneyRequest(journey_id=saved.journey.id))  # at 2026-11-01 09:00Z

    pool = await create_pool(journey_db)
    effects = Effects(f"127.0.0.1:{port}", "127.0.0.1:1", "127.0.0.1:1")
    worker = Worker(pool, clock, effects)

    async def tagged(user: str) -> bool:
        profile = (await ident.GetProfile(ipb.GetProfileRequest(profile_id=people[user]), metadata=md)).profile
        return "morning-mail" in profile.tags

    try:
        clock.set(datetime(2026, 11, 1, 20, tzinfo=UTC))  # 2 Nov 09:00 has begun in UTC+14
        assert await schedule.fan_out(pool, effects, clock, 4) == 2
        assert await schedule.fan_out(pool, effects, clock, 4) == 0  # once per occurrence
        while await worker.run_once():
            pass
        assert not await tagged("u-sh") and not await tagged("u-ny")
        clock.set(datetime(2026, 11, 2, 1, 0, 1, tzinfo=UTC))  # 09:00 in Shanghai
        while await worker.run_once():
            pass
        assert await tagged("u-sh") and not await tagged("u-ny")
        clock.set(datetime(2026, 11, 2, 14, 0, 1, tzinfo=UTC))  # 09:00 in New York
        while await worker.run_once():
            pass
        assert await tagged("u-ny")
    finally:
        await effects.close()
        await pool.close()
