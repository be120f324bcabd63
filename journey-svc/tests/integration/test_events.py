"""Journeys reacting to events on the bus: event entries with filters and entry keys, keyed
wait-for-event (the abandoned cart), goals and exit criteria, tier-change entries, merges and erasure."""

from __future__ import annotations

import uuid

import orjson
import pytest

from journey.background.events import make_consumer
from journey.background.worker import Effects, Worker
from mcloud.events.v1 import event_pb2, identity_events_pb2, loyalty_events_pb2
from mcloud.journey.v1 import journey_pb2 as pb
from mcloud_common.bus import publish, streams_of
from mcloud_common.db import create_pool
from mcloud_common.ids import new_id_str


@pytest.fixture
async def pool(journey_db):
    pool = await create_pool(journey_db)
    yield pool
    await pool.close()


@pytest.fixture
async def feed(pool, redis, clock):
    group = f"journey-test-{uuid.uuid4().hex[:8]}"
    for producer in ("identity", "loyalty", "messaging"):
        for stream in streams_of(producer, 4):
            await redis.xgroup_create(stream, group, id="$", mkstream=True)
    consumer, reactions = make_consumer(pool, redis, clock, 4, group=group)
    consumer.block_ms = 0

    async def send(*events: tuple[str, event_pb2.Event]) -> None:
        await reactions.journeys.refresh(pool, force=True)
        for producer, event in events:
            await publish(redis, [event], producer, 4)
        while await consumer.run_once():
            pass
        assert consumer.dead_lettered_total == 0

    return send


@pytest.fixture
async def worker(pool, clock):
    effects = Effects("127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:1")
    yield Worker(pool, clock, effects)
    await effects.close()


async def drain(worker) -> None:
    while await worker.run_once():
        pass


def track(tenant: str, profile: str, name: str, **props) -> tuple[str, event_pb2.Event]:
    return "identity", event_pb2.Event(id=new_id_str(), tenant_id=tenant, type="track", name=name, profile_id=profile,
                                       source="identity", properties_json=orjson.dumps(props).decode())


def domain(producer: str, tenant: str, type_: str, profile: str, payload) -> tuple[str, event_pb2.Event]:
    ev = event_pb2.Event(id=new_id_str(), tenant_id=tenant, type=type_, profile_id=profile, source=producer)
    ev.payload.Pack(payload)
    return producer, ev


CART = {
    "entry": {"type": "event", "event": "Product Added", "key": "cart_id",
              "where": [{"property": "price", "op": "gte", "value": 50}]},
    "reentry": {"mode": "after_exit"},
    "goal": {"event": "Order Completed", "within": "P7D", "exit": True},
    "exit_criteria": [{"event": "message.unsubscribed"}],
    "start": "wait-1h",
    "steps": [
        {"id": "wait-1h", "type": "wait", "duration": "PT1H", "next": "bought"},
        {"id": "bought", "type": "wait_for_event", "event": "Checkout Started", "match_key": "cart_id",
         "timeout": "P1D", "next": "done", "timeout_next": "tag"},
        {"id": "tag", "type": "jump", "to": "done"},
        {"id": "done", "type": "exit"},
    ],
}


async def publish_journey(api, definition) -> str:
    saved = await api.call("SaveJourneyDraft", pb.SaveJourneyDraftRequest(
        name="J", definition_json=orjson.dumps(definition).decode()))
    assert not saved.errors, saved.errors
    await api.call("PublishJourney", pb.PublishJourneyRequest(journey_id=saved.journey.id))
    return saved.journey.id


async def enrollments(api, jid: str = "", profile: str = "") -> list[pb.Enrollment]:
    return list((await api.call("ListEnrollments", pb.ListEnrollmentsRequest(
        journey_id=jid, profile_id=profile, page_size=100))).enrollments)


async def test_event_entry_with_filter_and_key_then_the_keyed_event_moves_the_wait(api, feed, worker, clock):
    jid = await publish_journey(api, CART)
    rachel = str(uuid.uuid4())
    await feed(track(api.tenant, rachel, "Product Added", cart_id="c1", price=129),
               track(api.tenant, rachel, "Product Added", cart_id="c1", price=129),  # same cart: one entry
               track(api.tenant, rachel, "Product Added", cart_id="c2", price=9))  # filtered out
    [e] = await enrollments(api, jid)
    assert e.entry_key == "c1" and e.trigger == "event" and orjson.loads(e.context_json)["price"] == 129
    await drain(worker)
    clock.advance(hours=1, seconds=1)
    await drain(worker)
    [e] = await enrollments(api, jid)
    assert e.current_step_id == "bought" and e.waiting_for_event == "Checkout Started"
    await feed(track(api.tenant, rachel, "Checkout Started", cart_id="other"))  # another cart: still waiting
    assert (await enrollments(api, jid))[0].waiting_for_event == "Checkout Started"
    await feed(track(api.tenant, rachel, "Checkout Started", cart_id="c1"))
    await drain(worker)
    [e] = await enrollments(api, jid)
    assert e.status == pb.ENROLLMENT_STATUS_COMPLETED
    trace = {(s.step_id, o.outcome) for s in (await api.call("GetJourneyStats", pb.GetJourneyStatsRequest(
        journey_id=jid))).steps for o in s.outcomes}
    assert ("bought", "event") in trace


async def test_timeout_path_goal_and_exit_criteria(api, feed, worker, clock):
    jid = await publish_journey(api, CART)
    ross, monica, joey = (str(uuid.uuid4()) for _ in range(3))
    await feed(*(track(api.tenant, p, "Product Added", cart_id=f"c-{p[:4]}", price=60) for p in (ross, monica, joey)))
    await drain(worker)
    clock.advance(hours=1, seconds=1)
    await drain(worker)  # all three wait for checkout now
    await feed(track(api.tenant, monica, "Order Completed", order_id="o1"),
               ("messaging", event_pb2.Event(id=new_id_str(), tenant_id=api.tenant, type="message.unsubscribed",
                                             profile_id=joey, source="messaging")))
    clock.advance(days=2)
    await drain(worker)
    await drain(worker)
    by = {e.profile_id: e for e in await enrollments(api, jid)}
    assert by[ross].status == pb.ENROLLMENT_STATUS_COMPLETED  # timed out, took the timeout path
    assert by[monica].converted and by[monica].exit_reason == "goal_reached"
    assert by[joey].exit_reason == "exit_criteria" and not by[joey].converted
    stats = await api.call("GetJourneyStats", pb.GetJourneyStatsRequest(journey_id=jid))
    assert stats.entered == 3 and stats.converted == 1


async def test_tier_upgrade_entry(api, feed):
    jid = await publish_journey(api, {"entry": {"type": "tier_change", "to": "silver"}, "start": "done",
                                      "steps": [{"id": "done", "type": "exit"}]})
    rachel, ross = str(uuid.uuid4()), str(uuid.uuid4())
    await feed(domain("loyalty", api.tenant, "tier.changed", rachel, loyalty_events_pb2.TierChanged(
        profile_id=rachel, to_tier_code="silver", direction="upgrade")),
               domain("loyalty", api.tenant, "tier.changed", ross, loyalty_events_pb2.TierChanged(
                   profile_id=ross, to_tier_code="gold", direction="upgrade")))
    assert [e.profile_id for e in await enrollments(api, jid)] == [rachel]


async def test_merge_keeps_one_enrollment_and_erase_removes_the_person(api, feed):
    plain = dict(CART, entry={"type": "event", "event": "Product Added"})
    jid = await publish_journey(api, plain)
    anon, known = str(uuid.uuid4()), str(uuid.uuid4())
    await feed(track(api.tenant, anon, "Product Added"), track(api.tenant, known, "Product Added"))
    await feed(domain("identity", api.tenant, "profile.merged", known, identity_events_pb2.ProfileMerged(
        from_profile_id=anon, into_profile_id=known)))
    states = sorted((e.profile_id == known, e.status, e.exit_reason) for e in await enrollments(api, jid))
    assert [s[1] for s in states].count(pb.ENROLLMENT_STATUS_ACTIVE) == 1
    assert (True, pb.ENROLLMENT_STATUS_EXITED, "merged") in states  # the history moves to the survivor too
    await feed(domain("identity", api.tenant, "profile.erased", known, identity_events_pb2.ProfileErased(
        profile_id=known)))
    assert await enrollments(api, profile=known) == []


async def test_domain_event_payload_fields_key_and_filter_entries(api, feed):
    definition = {"entry": {"type": "event", "event": "coupon.expiring", "key": "code"},
                  "reentry": {"mode": "after_exit"}, "start": "done", "steps": [{"id": "done", "type": "exit"}]}
    jid = await publish_journey(api, definition)
    rachel = str(uuid.uuid4())
    await feed(*(domain("loyalty", api.tenant, "coupon.expiring", rachel, loyalty_events_pb2.CouponExpiring(
        profile_id=rachel, code=code)) for code in ("SAVE10-A", "SAVE10-B", "SAVE10-A")))
    assert sorted(e.entry_key for e in await enrollments(api, jid)) == ["SAVE10-A", "SAVE10-B"]


async def test_journey_events_are_published_entered_converted_exited(api, feed, worker, redis):
    jid = await publish_journey(api, CART)
    monica = str(uuid.uuid4())
    await feed(track(api.tenant, monica, "Product Added", cart_id="c9", price=80))
    await drain(worker)
    await feed(track(api.tenant, monica, "Order Completed", order_id="o9", total=80.0, currency="EUR"))
    from mcloud_common.bus import decode, shard_of
    from mcloud_common.testing.services import wait_until

    async def published():
        entries = await redis.xrange(f"events.journey.{shard_of(monica, 4)}")
        types = [e.type for e in (decode(f) for _, f in entries) if e.profile_id == monica]
        return types if len(types) >= 3 else None

    # the service's relay publishes the outbox of its database, whoever wrote to it
    assert await wait_until(published, timeout=10) == ["journey.entered", "journey.converted", "journey.exited"]
    [e] = await enrollments(api, jid)
    assert e.exit_reason == "goal_reached"


async def test_an_ab_test_picks_the_converting_variant_after_decide_after(api, feed, worker, pool, clock):
    definition = {"entry": {"type": "api"}, "goal": {"event": "Order Completed", "exit": False}, "start": "ab",
                  "steps": [{"id": "ab", "type": "ab_test", "goal": "Order Completed", "decide_after": "P1D",
                             "winner_share": 90, "variants": [{"percent": 50, "next": "wait", "label": "A"},
                                                              {"percent": 50, "next": "wait", "label": "B"}]},
                            {"id": "wait", "type": "wait", "duration": "P7D", "next": "done"},
                            {"id": "done", "type": "exit"}]}
    jid = await publish_journey(api, definition)

    async def enter(n: int) -> list[str]:
        people = [str(uuid.uuid4()) for _ in range(n)]
        for p in people:
            await api.call("EnrollProfile", pb.EnrollProfileRequest(journey_id=jid, profile_id=p))
        await drain(worker)
        return people

    first = await enter(40)
    variant = {r["profile_id"]: r["outcome"] for r in await pool.fetch(
        "SELECT e.profile_id::text, l.outcome FROM step_log l JOIN enrollments e ON e.id = l.enrollment_id "
        "WHERE l.step_id = 'ab' AND l.step_type = 'ab_test'")}
    buyers = [p for p in first if variant[p] == "B"][:5]
    await feed(*(track(api.tenant, p, "Order Completed", order_id=f"o-{p[:6]}") for p in buyers))
    clock.advance(days=1, seconds=1)
    later = await enter(200)
    outcomes = [r["outcome"] for r in await pool.fetch(
        "SELECT l.outcome FROM step_log l JOIN enrollments e ON e.id = l.enrollment_id "
        "WHERE l.step_id = 'ab' AND l.step_type = 'ab_test' AND e.profile_id = ANY($1::uuid[])", later)]
    assert outcomes.count("B") > 160  # the winner takes about 90%
