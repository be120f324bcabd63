"""Members lost: an erased membership is counted in the program report's period (after the person's
data is gone), once however often profile.erased is delivered, and never for another program."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from loyalty.background.consumer import make_consumer
from loyalty.testing import setup, sports_program
from mcloud.events.v1 import event_pb2, identity_events_pb2
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.bus import publish, streams_of
from mcloud_common.db import create_pool
from mcloud_common.ids import new_id_str
from mcloud_common.timestamps import to_timestamp

pytestmark = pytest.mark.without_jobs


@pytest.fixture
async def feed(loyalty_db, redis, clock):
    pool = await create_pool(loyalty_db)
    group = f"loyalty-test-{uuid.uuid4().hex[:8]}"
    for stream in streams_of("identity", 4):
        await redis.xgroup_create(stream, group, id="$", mkstream=True)
    consumer, _ = make_consumer(pool, redis, clock, 4, group=group)
    consumer.block_ms = 0

    async def send(*events: event_pb2.Event) -> None:
        await publish(redis, events, "identity", 4)
        while await consumer.run_once():
            pass
        assert consumer.dead_lettered_total == 0

    yield send
    await pool.close()


def erased(tenant: str, profile_id: str) -> event_pb2.Event:
    ev = event_pb2.Event(id=new_id_str(), tenant_id=tenant, type="profile.erased", profile_id=profile_id,
                         source="identity")
    ev.payload.Pack(identity_events_pb2.ProfileErased(profile_id=profile_id))
    return ev


async def test_an_erased_member_is_counted_as_lost_in_its_period(api, feed, clock):
    program_id, rachel = await setup(api, sports_program(pending_days=0))
    other_program, _ = await setup(api, sports_program(name="Other"))
    staying = str(uuid.uuid4())
    await api.call("EnrollMember", pb.EnrollMemberRequest(program_id=program_id, profile_id=staying, source="web"))
    clock.advance(days=2)
    event = erased(api.tenant, rachel)
    await feed(event)
    await feed(event)  # delivered again: handled once

    request = pb.GetProgramReportRequest(program_id=program_id, period="day")
    getattr(request, "from").CopyFrom(to_timestamp(clock.now() - timedelta(days=5)))
    request.to.CopyFrom(to_timestamp(clock.now() + timedelta(days=1)))
    report = await api.call("GetProgramReport", request)
    assert report.members == 1
    assert sum(p.members_lost for p in report.periods) == 1
    # the erased member's enrolment went with their data; the one who stays is still counted
    assert sum(p.members_enrolled for p in report.periods) == 1
    other = await api.call("GetProgramReport", pb.GetProgramReportRequest(program_id=other_program, period="day"))
    assert sum(p.members_lost for p in other.periods) == 0
