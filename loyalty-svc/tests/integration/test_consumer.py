"""Loyalty reacting to identity's events on the bus: orders earn (once, however often replayed),
refunds reverse, signups enrol, profile.merged folds memberships without creating or losing a point,
profile.erased removes the person."""

from __future__ import annotations

import uuid

import orjson
import pytest

from loyalty.background.consumer import make_consumer
from loyalty.testing import assert_reconciles, setup, sports_program, wait_published
from mcloud.events.v1 import event_pb2, identity_events_pb2
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.bus import publish, streams_of
from mcloud_common.db import create_pool
from mcloud_common.ids import new_id_str

pytestmark = pytest.mark.without_jobs


@pytest.fixture
async def feed(loyalty_db, redis, clock):
    """send(*events) puts identity events on the bus and has a fresh loyalty consumer apply them."""
    pool = await create_pool(loyalty_db)
    group = f"loyalty-test-{uuid.uuid4().hex[:8]}"
    for stream in streams_of("identity", 4):  # start from now: not the other tests' events
        await redis.xgroup_create(stream, group, id="$", mkstream=True)
    consumer, handler = make_consumer(pool, redis, clock, 4, group=group)
    consumer.block_ms = 0

    async def send(*events: event_pb2.Event) -> None:
        await handler.refresh_triggers(pool)
        await publish(redis, events, "identity", 4)
        while await consumer.run_once():
            pass
        assert consumer.dead_lettered_total == 0

    yield send
    await pool.close()


def track(tenant: str, profile_id: str, name: str, **props) -> event_pb2.Event:
    return event_pb2.Event(id=new_id_str(), tenant_id=tenant, type="track", name=name, profile_id=profile_id,
                           source="identity", channel=event_pb2.CHANNEL_WEB,
                           properties_json=orjson.dumps(props).decode())


def identity_event(tenant: str, type_: str, profile_id: str, payload) -> event_pb2.Event:
    ev = event_pb2.Event(id=new_id_str(), tenant_id=tenant, type=type_, profile_id=profile_id, source="identity")
    ev.payload.Pack(payload)
    return ev


async def member(api, program_id: str, profile_id: str) -> pb.Member:
    return (await api.call("GetMember", pb.GetMemberRequest(program_id=program_id, profile_id=profile_id))).member


ORDER = {"order_id": "W-1", "total": 159.0, "currency": "EUR",
         "products": [{"product_id": "shoe-42", "category": "running_shoes", "price": 159.0, "quantity": 1}]}


async def test_an_order_event_replayed_ten_times_earns_once(api, db, feed):
    program_id, profile = await setup(api)
    await feed(*(track(api.tenant, profile, "Order Completed", **ORDER) for _ in range(10)))
    m = await member(api, program_id, profile)
    assert m.balance.pending == 100 + 159 and m.balance.qualifying_orders == 1
    assert await db.fetchval("SELECT count(*) FROM ledger_entries WHERE kind = 'earn'") == 2
    await assert_reconciles(db, api.tenant, program_id)


async def test_refund_and_cancellation_events_reverse(api, db, feed):
    program_id, profile = await setup(api)
    await feed(track(api.tenant, profile, "Order Completed", **ORDER))
    await feed(track(api.tenant, profile, "Order Refunded", order_id="W-1", total=79.5, currency="EUR"))
    assert (await member(api, program_id, profile)).balance.pending == 259 - 130  # half of 259, rounded
    await feed(track(api.tenant, profile, "Order Cancelled", order_id="W-1"))
    m = await member(api, program_id, profile)
    assert m.balance.pending == 0 and m.balance.available == 0 and m.balance.qualifying == 0
    await feed(track(api.tenant, profile, "Order Refunded", order_id="unknown-order", total=10))  # nothing to do
    await assert_reconciles(db, api.tenant, program_id)


async def test_signup_enrols_when_the_program_auto_enrols_and_earns_the_signup_rule(api, redis, feed):
    saved = (await api.call("UpsertProgram", pb.UpsertProgramRequest(
        program=sports_program(auto_enroll=True)))).program
    profile = str(uuid.uuid4())
    await feed(track(api.tenant, profile, "Signed Up", source="exit_intent_popup"))
    m = await member(api, saved.id, profile)
    assert m.balance.available == 50
    [enrolled] = await wait_published(redis, api.tenant, profile, "member.enrolled")
    assert enrolled.source == "loyalty"
    stranger = str(uuid.uuid4())
    await feed(track(api.tenant, stranger, "Order Completed", **ORDER))  # not a member, no enroll_on_order
    with pytest.raises(Exception):  # noqa: B017 - NOT_FOUND
        await member(api, saved.id, stranger)


async def test_review_rule_is_capped_per_window(api, feed, clock):
    program_id, profile = await setup(api)
    await feed(*(track(api.tenant, profile, "Product Reviewed", product_id=f"p{i}") for i in range(3)))
    assert (await member(api, program_id, profile)).balance.available == 40  # 20 each, capped at 40 / 30 days
    clock.advance(days=31)
    await feed(track(api.tenant, profile, "Product Reviewed", product_id="p9"))
    assert (await member(api, program_id, profile)).balance.available == 60


async def test_profile_merged_folds_lots_debt_and_tier_without_creating_points(api, db, feed, redis):
    program_id, anon = await setup(api, sports_program(pending_days=0))
    known = str(uuid.uuid4())
    await api.call("EnrollMember", pb.EnrollMemberRequest(program_id=program_id, profile_id=known))
    await api.call("EarnPoints", pb.EarnPointsRequest(program_id=program_id, profile_id=anon, points=700,
                                                      qualifying=True, idempotency_key="a"))
    await api.call("EarnPoints", pb.EarnPointsRequest(program_id=program_id, profile_id=known, points=400,
                                                      qualifying=True, idempotency_key="k"))
    before = await db.fetchval("SELECT sum(points) FROM ledger_entries")
    merged = identity_events_pb2.ProfileMerged(from_profile_id=anon, into_profile_id=known, reason="identify")
    await feed(identity_event(api.tenant, "profile.merged", known, merged))
    await feed(identity_event(api.tenant, "profile.merged", known, merged))  # a replay changes nothing
    m = await member(api, program_id, known)
    assert m.balance.available == 1100 and m.balance.qualifying == 1100 and m.tier.tier_code == "silver"
    assert (await member(api, program_id, anon)).profile_id == known  # the old id finds the survivor
    assert await db.fetchval("SELECT sum(points) FROM ledger_entries") == before
    kinds = await db.fetch("SELECT points FROM ledger_entries WHERE kind = 'merge' ORDER BY points")
    assert [r["points"] for r in kinds] == [-700, 700]
    await wait_published(redis, api.tenant, known, "tier.changed")
    await assert_reconciles(db, api.tenant, program_id)


async def test_merge_into_a_non_member_moves_the_membership(api, db, feed):
    program_id, anon = await setup(api, sports_program(pending_days=0))
    await api.call("EarnPoints", pb.EarnPointsRequest(program_id=program_id, profile_id=anon, points=30,
                                                      idempotency_key="a"))
    number = (await member(api, program_id, anon)).member_number
    known = str(uuid.uuid4())
    merged = identity_events_pb2.ProfileMerged(from_profile_id=anon, into_profile_id=known)
    await feed(identity_event(api.tenant, "profile.merged", known, merged))
    m = await member(api, program_id, known)
    assert (m.profile_id, m.member_number, m.balance.available) == (known, number, 30)
    page = await api.call("GetLedger", pb.GetLedgerRequest(program_id=program_id, profile_id=known))
    assert {e.kind for e in page.entries} >= {pb.LEDGER_ENTRY_KIND_EARN, pb.LEDGER_ENTRY_KIND_MERGE}
    await assert_reconciles(db, api.tenant, program_id)


async def test_profile_erased_removes_the_person(api, db, feed):
    program_id, profile = await setup(api, sports_program(pending_days=0))
    await api.call("EarnPoints", pb.EarnPointsRequest(program_id=program_id, profile_id=profile, points=30,
                                                      idempotency_key="a"))
    erased = identity_events_pb2.ProfileErased(profile_id=profile)
    await feed(identity_event(api.tenant, "profile.erased", profile, erased))
    pid = uuid.UUID(profile)
    for table in ("ledger_entries", "lots", "members", "qualifying"):
        assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE profile_id = $1", pid) == 0, table


async def test_custom_trigger_events_earn_and_page_views_are_not_booked(api, db, feed):
    program = sports_program(pending_days=0)
    program.earn_rules.add(id="quiz", trigger="Quiz Completed", points=15, enabled=True)
    program_id, profile = await setup(api, program)
    await feed(track(api.tenant, profile, "Product Viewed", product_id="p1"),
               track(api.tenant, profile, "Quiz Completed", quiz="marathon-pace"))
    assert (await member(api, program_id, profile)).balance.available == 15
    assert await db.fetchval("SELECT count(*) FROM processed_events") == 1  # the view never cost a transaction


async def test_birthday_trait_from_profile_identified(api, db, feed):
    _, profile = await setup(api)
    identified = identity_events_pb2.ProfileIdentified(profile_id=profile,
                                                       traits_json='{"birthday": "1990-03-14", "email": "r@x.io"}')
    await feed(identity_event(api.tenant, "profile.identified", profile, identified))
    assert await db.fetchval("SELECT birthday FROM members WHERE profile_id = $1", uuid.UUID(profile)) == "03-14"


async def test_a_batch_keeps_each_persons_order_signup_then_orders_then_merge(api, db, feed):
    """One read of the stream: a signup (enrols) then orders booked together (one of them twice); after
    a merge, an order still carrying the merged-away id is booked on the survivor."""
    saved = (await api.call("UpsertProgram", pb.UpsertProgramRequest(
        program=sports_program(auto_enroll=True, pending_days=0)))).program
    anon, known = str(uuid.uuid4()), str(uuid.uuid4())
    order = {**ORDER, "order_id": "X-1"}
    merged = identity_events_pb2.ProfileMerged(from_profile_id=anon, into_profile_id=known)
    await feed(track(api.tenant, anon, "Signed Up"),
               track(api.tenant, anon, "Order Completed", **order),
               track(api.tenant, anon, "Order Completed", **order),  # the same order again
               track(api.tenant, anon, "Order Completed", **{**order, "order_id": "X-2", "total": 10.0,
                                                            "products": []}))
    await feed(identity_event(api.tenant, "profile.merged", known, merged))
    await feed(track(api.tenant, anon, "Order Completed", **{**order, "order_id": "X-3", "total": 20.0,
                                                            "products": []}),
               track(api.tenant, anon, "Order Completed", **{**order, "order_id": "X-4", "total": 30.0,
                                                            "products": []}))
    m = await member(api, saved.id, known)
    assert m.balance.available == 50 + 259 + 110 + 120 + 130 and m.balance.qualifying_orders == 4
    assert await db.fetchval("SELECT count(DISTINCT order_id) FROM ledger_entries WHERE kind = 'earn' "
                             "AND order_id <> ''") == 4
    await assert_reconciles(db, api.tenant, saved.id)
