"""GetAudienceReport through the real service and PostgreSQL: known profiles gained and erased,
active profiles and members, orders and repurchase (a resent order counts once), churn, lifecycle
stages now, the buckets, and the refused windows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import grpc
import orjson
import pytest

from identity.app import build
from mcloud.identity.v1 import identity_pb2 as pb
from mcloud.identity.v1 import identity_pb2_grpc
from mcloud_common.clock import ManualClock
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.ids import new_id_str
from mcloud_common.testing.services import running_service
from mcloud_common.timestamps import from_timestamp, to_timestamp


@pytest.fixture
async def clocked(identity_db, settings_for):
    # identifiers are stamped by PostgreSQL's clock, so the service clock starts at real now
    clock = ManualClock(datetime.now(UTC))
    async with running_service(build, settings_for(identity_db), clock=clock, jobs=False) as (_, channel):
        yield identity_pb2_grpc.IdentityServiceStub(channel), clock


def call(type_, *, user_id="", anonymous_id="", name="", at=None, traits=None, **props) -> pb.InboundEvent:
    ev = pb.InboundEvent(type=type_, message_id=new_id_str(), user_id=user_id, anonymous_id=anonymous_id,
                         name=name, channel="web", properties_json=orjson.dumps(props).decode(),
                         traits_json=orjson.dumps(traits or {}).decode())
    if at is not None:
        ev.timestamp.CopyFrom(to_timestamp(at))
    return ev


def report_request(since: datetime | None = None, until: datetime | None = None, granularity: str = ""):
    request = pb.GetAudienceReportRequest(granularity=granularity)
    if since is not None:
        request.since.CopyFrom(to_timestamp(since))
    if until is not None:
        request.until.CopyFrom(to_timestamp(until))
    return request


async def test_the_report_counts_gained_erased_active_orders_churn_and_stages(clocked, db):
    stub, clock = clocked
    md = tenant_metadata(str(uuid.uuid4()))
    now = clock.now()
    track, identify = pb.CALL_TYPE_TRACK, pb.CALL_TYPE_IDENTIFY
    result = await stub.IngestEvents(pb.IngestEventsRequest(events=[
        call(track, user_id="u1", name="Order Completed", order_id="o1", total=40),
        call(track, user_id="u1", name="Order Completed", order_id="o2", total=60),
        call(track, user_id="u1", name="Order Completed", order_id="o2", total=60),  # resent: once
        # an old order imported today: churned at once (180 days by default)
        call(track, user_id="u2", name="Order Completed", at=now - timedelta(days=200), order_id="o9", total=10),
        call(identify, user_id="u3", traits={"email": "monica@example.com"}),
        call(pb.CALL_TYPE_PAGE, anonymous_id="a-1", name="Home"),
        call(identify, user_id="u4", traits={"email": "ross@example.com"}),
    ]), metadata=md)
    assert result.accepted == 7, result
    u1, u4 = result.profile_ids[0], result.profile_ids[6]
    # u1 is a loyalty member (what loyalty's member.enrolled sets through identity's consumer)
    await db.execute("UPDATE profiles SET computed = computed || '{\"loyalty_member\": true}' WHERE id = $1", u1)
    await stub.EraseProfile(pb.EraseProfileRequest(profile_id=u4), metadata=md)

    since, until = now - timedelta(days=1), now + timedelta(hours=1)
    got = await stub.GetAudienceReport(report_request(since, until, "day"), metadata=md)
    assert (got.known_gained, got.erased, got.active, got.active_members) == (3, 1, 3, 1)
    assert got.churned == 1
    assert (got.window_buyers, got.window_repeat_buyers, got.window_repurchase_rate) == (1, 1, 1.0)
    assert {c.stage: c.profiles for c in got.lifecycle} == {
        "potential": 2, "first_purchase": 0, "repeat": 1, "retained": 0, "churned": 1}
    assert (got.profiles, got.known_profiles, got.customers, got.repeat_customers) == (4, 3, 2, 1)
    assert (got.repurchase_rate, got.churn_rate) == (0.5, 0.5)
    starts = [from_timestamp(p.start) for p in got.periods]
    assert starts[0] == since.replace(hour=0, minute=0, second=0, microsecond=0)
    assert all(b - a == timedelta(days=1) for a, b in pairwise(starts))
    assert sum(p.orders for p in got.periods) == 2 and sum(p.erased for p in got.periods) == 1
    assert from_timestamp(got.since) == since and got.granularity == "day"

    # another tenant sees none of it; a window before it all sees no activity but the same stages now
    other = await stub.GetAudienceReport(report_request(), metadata=tenant_metadata(str(uuid.uuid4())))
    assert (other.profiles, other.active, other.known_gained) == (0, 0, 0)
    assert len(other.periods) in (30, 31) and other.granularity == "day"
    before = await stub.GetAudienceReport(report_request(now - timedelta(days=90), now - timedelta(days=2),
                                                         "month"), metadata=md)
    assert (before.active, before.known_gained, before.window_buyers) == (0, 0, 0)
    assert before.customers == 2 and len(before.periods) in (3, 4)


@pytest.mark.without_jobs
@pytest.mark.parametrize(("since_days", "until_days", "granularity", "code"), [
    (-1, 0, "hour", "invalid_granularity"),
    (0, -1, "day", "invalid_window"),
    (-800, 0, "month", "window_too_long"),
    (-500, 0, "day", "window_too_long"),
])
async def test_bad_windows_are_refused_with_a_code(identity, since_days, until_days, granularity, code):
    stub, _ = identity
    now = datetime.now(UTC)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetAudienceReport(report_request(now + timedelta(days=since_days), now + timedelta(days=until_days),
                                                    granularity), metadata=tenant_metadata(str(uuid.uuid4())))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(err.value.trailing_metadata())["mcloud-error-code"] == code
