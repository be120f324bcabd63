"""Executing journeys durably: enrollment under re-entry rules and holdout, steps run by the worker
on a controlled clock with side effects in the real loyalty service, exactly once even when a worker
dies between performing an effect and saving, retries with backoff, pause and archive."""

from __future__ import annotations

import uuid
from datetime import timedelta

import grpc
import orjson
import pytest

from journey.background.worker import Effects, Worker
from loyalty.app import MIGRATIONS as LOYALTY_MIGRATIONS
from loyalty.app import build as build_loyalty
from loyalty.settings import LoyaltySettings
from loyalty.testing import sports_program
from mcloud.journey.v1 import journey_pb2 as pb
from mcloud.loyalty.v1 import loyalty_pb2 as lpb
from mcloud.loyalty.v1 import loyalty_pb2_grpc
from mcloud_common.db import create_pool
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.testing.services import running_service


@pytest.fixture
async def loyalty(make_database, redis_url):
    db = await make_database("loyalty", migrations=LOYALTY_MIGRATIONS)
    settings = LoyaltySettings(database_url=db, redis_url=redis_url, grpc_port=0)
    async with running_service(build_loyalty, settings, jobs=False) as (service, channel):
        yield loyalty_pb2_grpc.LoyaltyServiceStub(channel), service.port


@pytest.fixture
async def worker(journey_db, clock, loyalty):
    pool = await create_pool(journey_db)
    effects = Effects("127.0.0.1:1", f"127.0.0.1:{loyalty[1]}", "127.0.0.1:1")  # identity, messaging: not up
    yield Worker(pool, clock, effects, lease_seconds=30)
    await effects.close()
    await pool.close()


async def drain(worker: Worker) -> int:
    n = 0
    while handled := await worker.run_once():
        n += handled
    return n


async def loyalty_setup(stub, tenant: str) -> tuple[str, str]:
    md = tenant_metadata(tenant)
    program = (await stub.UpsertProgram(lpb.UpsertProgramRequest(program=sports_program(pending_days=0)),
                                        metadata=md)).program
    campaign = (await stub.UpsertCouponCampaign(lpb.UpsertCouponCampaignRequest(campaign=lpb.CouponCampaign(
        name="Come back", discount_type=lpb.DISCOUNT_TYPE_PERCENT_OFF, percent_off=10, currency="EUR",
        validity_days=30)), metadata=md)).campaign
    return program.id, campaign.id


def journey_def(program_id: str, campaign_id: str, **extra) -> dict:
    return {"entry": {"type": "api"}, "start": "points", **extra,
            "steps": [{"id": "points", "type": "award_points", "points": 100, "program_id": program_id,
                       "reason": "welcome", "next": "wait-1d"},
                      {"id": "wait-1d", "type": "wait", "duration": "P1D", "next": "coupon"},
                      {"id": "coupon", "type": "issue_coupon", "campaign_id": campaign_id, "next": "done"},
                      {"id": "done", "type": "exit"}]}


async def publish(api, definition: dict) -> str:
    saved = await api.call("SaveJourneyDraft", pb.SaveJourneyDraftRequest(
        name="Welcome", definition_json=orjson.dumps(definition).decode()))
    assert not saved.errors, saved.errors
    await api.call("PublishJourney", pb.PublishJourneyRequest(journey_id=saved.journey.id))
    return saved.journey.id


async def member(stub, tenant: str, program_id: str, profile: str) -> lpb.Member:
    md = tenant_metadata(tenant)
    await stub.EnrollMember(lpb.EnrollMemberRequest(program_id=program_id, profile_id=profile), metadata=md)
    return (await stub.GetMember(lpb.GetMemberRequest(program_id=program_id, profile_id=profile), metadata=md)).member


async def test_a_journey_runs_its_steps_with_effects_in_loyalty_and_timers_on_the_clock(api, loyalty, worker, clock):
    stub, _ = loyalty
    program_id, campaign_id = await loyalty_setup(stub, api.tenant)
    jid = await publish(api, journey_def(program_id, campaign_id))
    profile = str(uuid.uuid4())
    await member(stub, api.tenant, program_id, profile)
    enrolled = await api.call("EnrollProfile", pb.EnrollProfileRequest(journey_id=jid, profile_id=profile))
    assert enrolled.outcome == pb.ENROLL_OUTCOME_ENROLLED
    assert await drain(worker) == 1
    e = (await api.call("GetEnrollment", pb.GetEnrollmentRequest(enrollment_id=enrolled.enrollment.id))).enrollment
    assert e.current_step_id == "wait-1d" and e.waiting_until.ToDatetime() == (clock.now() + timedelta(days=1)).replace(
        tzinfo=None)
    assert (await member(stub, api.tenant, program_id, profile)).balance.available == 100
    assert await drain(worker) == 0  # nothing due before the timer
    clock.advance(days=1, seconds=1)
    assert await drain(worker) == 1
    got = await api.call("GetEnrollment", pb.GetEnrollmentRequest(enrollment_id=enrolled.enrollment.id))
    assert got.enrollment.status == pb.ENROLLMENT_STATUS_COMPLETED
    assert [(t.step_id, t.outcome) for t in got.trace] == [
        ("points", "entered"), ("points", "done"), ("wait-1d", "next"), ("coupon", "done"), ("done", "exit")]
    coupons = await stub.ListCoupons(lpb.ListCouponsRequest(profile_id=profile), metadata=tenant_metadata(api.tenant))
    assert len(coupons.coupons) == 1 and coupons.coupons[0].source == "journey"
    stats = await api.call("GetJourneyStats", pb.GetJourneyStatsRequest(journey_id=jid))
    assert (stats.entered, stats.completed, stats.active) == (1, 1, 0)
    assert {s.step_id: s.completed for s in stats.steps} == {"points": 1, "wait-1d": 1, "coupon": 1, "done": 1}


async def test_a_worker_dying_after_an_effect_repeats_it_harmlessly(api, loyalty, worker, clock):
    stub, _ = loyalty
    program_id, campaign_id = await loyalty_setup(stub, api.tenant)
    jid = await publish(api, journey_def(program_id, campaign_id))
    profile = str(uuid.uuid4())
    await member(stub, api.tenant, program_id, profile)
    await api.call("EnrollProfile", pb.EnrollProfileRequest(journey_id=jid, profile_id=profile))
    # a worker claims and performs the effect, then dies before saving
    async with worker._pool.acquire() as conn, conn.transaction():
        from journey.repo import enrollments as repo
        [row] = await repo.claim(conn, clock.now(), 10, 30)
    done = await worker._run(row, clock.now())
    assert done.outcome is not None  # points were awarded; nothing saved
    assert await drain(worker) == 0  # still leased
    clock.advance(seconds=31)  # the lease ran out: another worker takes it over
    assert await drain(worker) == 1
    assert (await member(stub, api.tenant, program_id, profile)).balance.available == 100  # once


async def test_reentry_rules_entry_keys_and_idempotency(api, loyalty, worker):
    stub, _ = loyalty
    program_id, campaign_id = await loyalty_setup(stub, api.tenant)
    never = await publish(api, journey_def(program_id, campaign_id))
    profile = str(uuid.uuid4())
    first = await api.call("EnrollProfile", pb.EnrollProfileRequest(journey_id=never, profile_id=profile,
                                                                    idempotency_key="k1"))
    again = await api.call("EnrollProfile", pb.EnrollProfileRequest(journey_id=never, profile_id=profile,
                                                                    idempotency_key="k1"))
    blocked = await api.call("EnrollProfile", pb.EnrollProfileRequest(journey_id=never, profile_id=profile))
    assert first.outcome == pb.ENROLL_OUTCOME_ENROLLED and again.outcome == pb.ENROLL_OUTCOME_DUPLICATE
    assert again.enrollment.id == first.enrollment.id
    assert blocked.outcome == pb.ENROLL_OUTCOME_REENTRY_BLOCKED and blocked.enrollment.id == first.enrollment.id
    keyed = [await api.call("EnrollProfile", pb.EnrollProfileRequest(journey_id=never, profile_id=profile,
                                                                     entry_key=k)) for k in ("cart-1", "cart-2",
                                                                                             "cart-1")]
    assert [k.outcome for k in keyed] == [pb.ENROLL_OUTCOME_ENROLLED, pb.ENROLL_OUTCOME_ENROLLED,
                                          pb.ENROLL_OUTCOME_DUPLICATE]
    page = await api.call("ListEnrollments", pb.ListEnrollmentsRequest(journey_id=never, page_size=2))
    assert len(page.enrollments) == 2 and page.next_page_token


async def test_holdout_people_travel_without_effects(api, loyalty, worker):
    stub, _ = loyalty
    program_id, campaign_id = await loyalty_setup(stub, api.tenant)
    jid = await publish(api, journey_def(program_id, campaign_id, holdout_percent=50))
    profiles = [str(uuid.uuid4()) for _ in range(30)]
    for p in profiles:
        await member(stub, api.tenant, program_id, p)
        await api.call("EnrollProfile", pb.EnrollProfileRequest(journey_id=jid, profile_id=p))
    await drain(worker)
    held = {e.profile_id for e in (await api.call("ListEnrollments", pb.ListEnrollmentsRequest(
        journey_id=jid, page_size=100))).enrollments if e.holdout}
    assert 0 < len(held) < 30
    for p in profiles:
        points = (await member(stub, api.tenant, program_id, p)).balance.available
        assert points == (0 if p in held else 100)
    stats = await api.call("GetJourneyStats", pb.GetJourneyStatsRequest(journey_id=jid))
    assert stats.entered + stats.holdout_entered == 30 and stats.holdout_entered == len(held)


async def test_a_failing_effect_is_retried_with_backoff_then_the_enrollment_exits(api, loyalty, worker, clock):
    definition = {"entry": {"type": "api"}, "start": "hello",
                  "steps": [{"id": "hello", "type": "send", "channel": "email", "template": "welcome"}]}
    jid = await publish(api, definition)
    enrolled = await api.call("EnrollProfile", pb.EnrollProfileRequest(journey_id=jid, profile_id=str(uuid.uuid4())))
    for attempt in range(1, 6):
        assert await drain(worker) == 1
        e = (await api.call("GetEnrollment", pb.GetEnrollmentRequest(enrollment_id=enrolled.enrollment.id))).enrollment
        if attempt < 5:
            assert e.status == pb.ENROLLMENT_STATUS_ACTIVE
            clock.advance(hours=2)
    assert e.status == pb.ENROLLMENT_STATUS_EXITED and e.exit_reason == "error"


async def test_paused_journeys_hold_and_archived_ones_end(api, loyalty, worker, clock):
    stub, _ = loyalty
    program_id, campaign_id = await loyalty_setup(stub, api.tenant)
    jid = await publish(api, journey_def(program_id, campaign_id))
    profile = str(uuid.uuid4())
    await member(stub, api.tenant, program_id, profile)
    enrolled = await api.call("EnrollProfile", pb.EnrollProfileRequest(journey_id=jid, profile_id=profile))
    await api.call("PauseJourney", pb.PauseJourneyRequest(journey_id=jid))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("EnrollProfile", pb.EnrollProfileRequest(journey_id=jid, profile_id=str(uuid.uuid4())))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await drain(worker)
    assert (await member(stub, api.tenant, program_id, profile)).balance.available == 0  # held
    await api.call("ResumeJourney", pb.ResumeJourneyRequest(journey_id=jid))
    clock.advance(minutes=5)
    await drain(worker)
    assert (await member(stub, api.tenant, program_id, profile)).balance.available == 100
    await api.call("ArchiveJourney", pb.ArchiveJourneyRequest(journey_id=jid))
    clock.advance(days=2)
    await drain(worker)
    e = (await api.call("GetEnrollment", pb.GetEnrollmentRequest(enrollment_id=enrolled.enrollment.id))).enrollment
    assert e.status == pb.ENROLLMENT_STATUS_EXITED and e.exit_reason == "archived"


@pytest.fixture
async def identity(make_database, redis_url):
    from identity.app import MIGRATIONS as IDENTITY_MIGRATIONS
    from identity.app import build as build_identity
    from identity.settings import IdentitySettings
    from mcloud.identity.v1 import identity_pb2_grpc

    db = await make_database("identity", migrations=IDENTITY_MIGRATIONS)
    settings = IdentitySettings(database_url=db, redis_url=redis_url, grpc_port=0)
    async with running_service(build_identity, settings, jobs=False) as (service, channel):
        yield identity_pb2_grpc.IdentityServiceStub(channel), service.port


async def test_condition_splits_read_traits_and_loyalty_from_the_owning_services(api, loyalty, identity, journey_db,
                                                                                clock):
    from mcloud.identity.v1 import identity_pb2 as ipb

    stub, loyalty_port = loyalty
    ident, identity_port = identity
    md = tenant_metadata(api.tenant)
    program_id, _ = await loyalty_setup(stub, api.tenant)
    people = {}
    for user, locale in (("u-cn", "zh-CN"), ("u-en", "en")):
        r = await ident.IngestEvents(ipb.IngestEventsRequest(events=[ipb.InboundEvent(
            type=ipb.CALL_TYPE_IDENTIFY, message_id=f"m-{user}", user_id=user, channel="web",
            traits_json=orjson.dumps({"locale": locale}).decode())]), metadata=md)
        people[user] = r.profile_ids[0]
    for profile in people.values():
        await member(stub, api.tenant, program_id, profile)
    await stub.AdjustPoints(lpb.AdjustPointsRequest(program_id=program_id, profile_id=people["u-en"], points=1000,
                                                    qualifying=True, actor="ops", reason="status match"),
                            metadata=md)  # u-en is Silver
    definition = {"entry": {"type": "api"}, "start": "split",
                  "steps": [{"id": "split", "type": "condition", "else": "small",
                             "branches": [{"when": {"trait": "locale", "op": "eq", "value": "zh-CN"}, "next": "cn",
                                           "label": "zh"},
                                          {"when": {"loyalty": "tier", "op": "in", "value": ["silver", "gold"]},
                                           "next": "vip", "label": "vip"}]},
                            {"id": "cn", "type": "award_points", "points": 88, "program_id": program_id,
                             "reason": "cn"},
                            {"id": "vip", "type": "award_points", "points": 50, "program_id": program_id,
                             "reason": "vip"},
                            {"id": "small", "type": "award_points", "points": 1, "program_id": program_id,
                             "reason": "small"}]}
    jid = await publish(api, definition)
    for profile in people.values():
        await api.call("EnrollProfile", pb.EnrollProfileRequest(journey_id=jid, profile_id=profile))
    pool = await create_pool(journey_db)
    effects = Effects(f"127.0.0.1:{identity_port}", f"127.0.0.1:{loyalty_port}", "127.0.0.1:1")
    try:
        await drain(Worker(pool, clock, effects))
    finally:
        await effects.close()
        await pool.close()
    assert (await member(stub, api.tenant, program_id, people["u-cn"])).balance.available == 88
    assert (await member(stub, api.tenant, program_id, people["u-en"])).balance.available == 50
    stats = await api.call("GetJourneyStats", pb.GetJourneyStatsRequest(journey_id=jid))
    split = next(s for s in stats.steps if s.step_id == "split")
    assert {o.outcome: o.count for o in split.outcomes} == {"zh": 1, "vip": 1}


async def test_test_mode_fast_forwards_waits_and_lists_effects(api):
    from mcloud.journey.v1 import journey_pb2 as jpb

    cart = {"entry": {"type": "event", "event": "Product Added", "key": "cart_id"}, "start": "wait-1h",
            "steps": [{"id": "wait-1h", "type": "wait", "duration": "PT1H", "next": "bought"},
                      {"id": "bought", "type": "wait_for_event", "event": "Checkout Started", "timeout": "P1D",
                       "next": "done", "timeout_next": "remind"},
                      {"id": "remind", "type": "send", "channel": "email", "template": "cart", "next": "done"},
                      {"id": "done", "type": "exit"}]}
    text = orjson.dumps(cart).decode()
    profile = str(uuid.uuid4())
    lazy = await api.call("TestJourney", jpb.TestJourneyRequest(definition_json=text, profile_id=profile))
    assert lazy.status == "completed" and lazy.waited_seconds == 3600 + 86400
    assert [(t.step_id, t.outcome) for t in lazy.trace] == [("wait-1h", "next"), ("bought", "timeout"),
                                                            ("remind", "done"), ("done", "exit")]
    assert [(e.step_id, e.kind) for e in lazy.effects] == [("remind", "send")]
    keen = await api.call("TestJourney", jpb.TestJourneyRequest(definition_json=text, profile_id=profile,
                                                                events=["Checkout Started"]))
    assert [t.outcome for t in keen.trace][:2] == ["next", "event"] and not keen.effects
    broken = await api.call("TestJourney", jpb.TestJourneyRequest(definition_json="{}", profile_id=profile))
    assert broken.status == "invalid" and broken.errors


async def test_dry_run_estimates_entrants_through_identity(identity, journey_db, redis_url, clock):
    from journey.app import build
    from journey.settings import JourneySettings
    from mcloud.identity.v1 import identity_pb2 as ipb
    from mcloud.journey.v1 import journey_pb2_grpc

    ident, identity_port = identity
    tenant = str(uuid.uuid4())
    md = tenant_metadata(tenant)
    events = [ipb.InboundEvent(type=ipb.CALL_TYPE_TRACK, message_id=f"m{i}", anonymous_id=f"a{i % 7}",
                               name="Product Added", channel="web",
                               properties_json=orjson.dumps({"price": 10 * i}).decode()) for i in range(20)]
    await ident.IngestEvents(ipb.IngestEventsRequest(events=events), metadata=md)
    settings = JourneySettings(database_url=journey_db, redis_url=redis_url, grpc_port=0,
                               identity_target=f"127.0.0.1:{identity_port}")
    async with running_service(build, settings, clock=clock, jobs=False) as (_, channel):
        stub = journey_pb2_grpc.JourneyServiceStub(channel)
        definition = {"entry": {"type": "event", "event": "Product Added",
                                "where": [{"property": "price", "op": "gte", "value": 150}]},
                      "holdout_percent": 50, "start": "done", "steps": [{"id": "done", "type": "exit"}]}
        r = await stub.DryRunJourney(pb.DryRunJourneyRequest(definition_json=orjson.dumps(definition).decode(),
                                                             days=30), metadata=md)
    # events 15..19 have price >= 150: anonymous ids a1, a2, a3, a4, a5
    assert r.estimated_entrants == 5 and r.total_profiles == 7 and r.estimated_holdout in (2, 3)
    assert "Product Added" in r.basis
