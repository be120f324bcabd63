"""The scheduled jobs with a controlled clock: expiry (never twice, also when two runs race),
expiry reminders (once), tier reviews at the end of the qualification period, birthday points."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from loyalty.background import ledger as jobs
from loyalty.testing import assert_reconciles, setup, sports_program, wait_published
from mcloud.events.v1 import loyalty_events_pb2
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.db import create_pool

pytestmark = pytest.mark.without_jobs


@pytest.fixture
async def pool(loyalty_db):
    pool = await create_pool(loyalty_db)
    yield pool
    await pool.close()


async def member(api, program_id, profile) -> pb.Member:
    return (await api.call("GetMember", pb.GetMemberRequest(program_id=program_id, profile_id=profile))).member


async def earn(api, program_id, profile, points, **kw):
    return await api.call("EarnPoints", pb.EarnPointsRequest(program_id=program_id, profile_id=profile, points=points,
                                                             idempotency_key=str(uuid.uuid4()), reason="manual", **kw))


async def test_points_expire_once_even_when_two_runs_race(api, db, pool, clock, redis):
    program_id, profile = await setup(api, sports_program(pending_days=0, points_validity_days=30))
    await earn(api, program_id, profile, 100)
    clock.advance(days=10)
    await earn(api, program_id, profile, 50)
    await api.call("SpendPoints", pb.SpendPointsRequest(program_id=program_id, profile_id=profile, points=30,
                                                        idempotency_key="s"))
    clock.advance(days=21)  # the first lot (70 left) is due, the second is not
    assert (await member(api, program_id, profile)).balance.available == 50  # expired points are not spendable
    results = await asyncio.gather(jobs.expire_due(pool, clock, 4), jobs.expire_due(pool, clock, 4))
    assert sorted(results) == [0, 70]
    assert await jobs.expire_due(pool, clock, 4) == 0
    m = await member(api, program_id, profile)
    assert m.balance.available == 50 and m.balance.lifetime_expired == 70
    [expired] = await wait_published(redis, api.tenant, profile, "points.expired")
    payload = loyalty_events_pb2.PointsExpired()
    expired.payload.Unpack(payload)
    assert payload.points == 70 and payload.balance_available == 50
    await assert_reconciles(db, api.tenant, program_id)


async def test_expiry_reminder_is_sent_once_per_batch(api, pool, clock, redis):
    program_id, profile = await setup(api, sports_program(pending_days=0, points_validity_days=40,
                                                          expiry_reminder_days=7))
    await earn(api, program_id, profile, 80)
    assert await jobs.remind_expiring(pool, clock, 4) == 0  # 40 days away
    clock.advance(days=34)
    assert await jobs.remind_expiring(pool, clock, 4) == 1
    assert await jobs.remind_expiring(pool, clock, 4) == 0
    [event] = await wait_published(redis, api.tenant, profile, "points.expiring")
    payload = loyalty_events_pb2.PointsExpiring()
    event.payload.Unpack(payload)
    assert payload.points == 80 and payload.balance_available == 80


async def test_end_of_month_expiry(api, clock):
    program_id, profile = await setup(api, sports_program(pending_days=0, points_validity_days=0,
                                                          expiry_mode=pb.EXPIRY_MODE_END_OF_MONTH))
    entry = (await earn(api, program_id, profile, 10)).entries[0]
    assert entry.expires_at.ToDatetime().isoformat() == "2026-12-01T00:00:00"


async def test_tier_is_kept_until_the_period_ends_then_reviewed(api, pool, clock, redis):
    program = sports_program(pending_days=0, tier_window_months=12)
    program_id, profile = await setup(api, program)
    r = await earn(api, program_id, profile, 1200, qualifying=True)
    assert r.member.tier.tier_code == "silver"
    review_at = r.member.tier.review_at.ToDatetime()
    await api.call("AdjustPoints", pb.AdjustPointsRequest(program_id=program_id, profile_id=profile, points=-500,
                                                          qualifying=True, actor="ops", reason="fraud check",
                                                          idempotency_key="q"))
    assert (await member(api, program_id, profile)).tier.tier_code == "silver"  # no downgrade mid-period
    assert await jobs.review_tiers(pool, clock, 4) == 0
    clock.set(review_at.replace(tzinfo=clock.now().tzinfo) + timedelta(seconds=1))
    assert await jobs.review_tiers(pool, clock, 4) == 1
    assert (await member(api, program_id, profile)).tier.tier_code == "normal"
    events = await wait_published(redis, api.tenant, profile, "tier.changed", 2)
    directions = []
    for e in events:
        p = loyalty_events_pb2.TierChanged()
        e.payload.Unpack(p)
        directions.append(p.direction)
    assert directions == ["upgrade", "downgrade"]


async def test_immediate_downgrade_policy(api):
    program_id, profile = await setup(api, sports_program(pending_days=0,
                                                          downgrade_policy=pb.DOWNGRADE_POLICY_IMMEDIATE))
    await earn(api, program_id, profile, 1000, qualifying=True)
    r = await api.call("AdjustPoints", pb.AdjustPointsRequest(program_id=program_id, profile_id=profile, points=-1,
                                                              qualifying=True, actor="ops", reason="correction",
                                                              idempotency_key="q"))
    assert r.member.tier.tier_code == "normal"


async def test_birthday_points_once_a_year(api, db, pool, clock):
    program = sports_program(pending_days=0)
    program.earn_rules.add(id="bday", name="Birthday gift", trigger="birthday", points=200, enabled=True)
    program_id, profile = await setup(api, program)
    await db.execute("UPDATE members SET birthday = $1 WHERE profile_id = $2", clock.now().strftime("%m-%d"),
                     uuid.UUID(profile))
    assert await jobs.birthdays(pool, clock, 4) == 1
    assert await jobs.birthdays(pool, clock, 4) == 0
    assert (await member(api, program_id, profile)).balance.available == 200


@pytest.mark.parametrize("seed", range(6))
async def test_random_histories_never_expire_a_point_twice(api, db, pool, clock, seed):
    """Random earn / spend / return / time / expiry-run histories (two expiry runs racing each time)
    through the real service: the ledger always reconciles, and what expired equals what the lots
    still held when their time came."""
    import random

    rng = random.Random(seed)
    program_id, profile = await setup(api, sports_program(pending_days=rng.choice([0, 3]),
                                                          points_validity_days=rng.choice([5, 20])))
    expected_expired = 0
    for step in range(25):
        op = rng.choice(["earn", "earn", "order", "spend", "return", "wait", "expire"])
        if op == "earn":
            await earn(api, program_id, profile, rng.randint(1, 300))
        elif op == "order":
            await api.call("EarnPoints", pb.EarnPointsRequest(
                program_id=program_id, profile_id=profile,
                order=pb.Order(order_id=f"o{step}", total_minor=rng.randint(100, 30_000), currency="EUR")))
        elif op == "spend":
            available = (await member(api, program_id, profile)).balance.available
            if available > 0:
                await api.call("SpendPoints", pb.SpendPointsRequest(
                    program_id=program_id, profile_id=profile, points=rng.randint(1, available),
                    idempotency_key=f"s{step}"))
        elif op == "return":
            orders = [r["order_id"] for r in await db.fetch(
                "SELECT DISTINCT order_id FROM qualifying WHERE profile_id = $1 AND order_id <> ''",
                uuid.UUID(profile))]
            if orders:
                await api.call("ReverseOrder", pb.ReverseOrderRequest(
                    program_id=program_id, profile_id=profile, order_id=rng.choice(orders),
                    refund_minor=rng.choice([0, 500]), idempotency_key=f"r{step}"))
        elif op == "wait":
            clock.advance(days=rng.randint(1, 8))
        else:
            due = await db.fetchval("SELECT coalesce(sum(remaining), 0) FROM lots WHERE profile_id = $1 "
                                    "AND remaining > 0 AND expires_at <= $2", uuid.UUID(profile), clock.now())
            runs = await asyncio.gather(jobs.expire_due(pool, clock, 4), jobs.expire_due(pool, clock, 4))
            assert sum(runs) == due  # together, the two runs took exactly what was due, once
            expected_expired += due
        await assert_reconciles(db, api.tenant, program_id)
    m = await member(api, program_id, profile)
    assert m.balance.lifetime_expired == expected_expired
    assert await db.fetchval("SELECT coalesce(-sum(points), 0) FROM ledger_entries WHERE kind = 'expiry'") \
        == expected_expired


async def test_a_trigger_occurrence_earns_once(api, db, pool, clock):
    from loyalty.repo import ledger
    from loyalty.repo.programs import load_all

    program_id, profile = await setup(api, sports_program(pending_days=0))
    program = (await load_all(pool, api.tenant))[program_id]
    async with pool.acquire() as conn:
        for _ in range(3):
            async with conn.transaction():
                entries, _ = await ledger.earn_trigger(conn, api.tenant, program, profile, "review", "event:e-1",
                                                       now=clock.now(), shards=4)
            assert [e.points for e in entries] == [20]
    assert await db.fetchval("SELECT count(*) FROM ledger_entries WHERE kind = 'earn'") == 1
