"""Profile features through the real service, PostgreSQL and Valkey: trait source priority and
recency, tags, consent, computed traits, RFM, lifecycle (with the periodic churn pass on a manual
clock) and the loyalty/messaging events that change profiles."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import orjson
import pytest
from google.protobuf.message import Message

from identity.app import build
from identity.background.profiles import lifecycle_pass, make_consumer
from identity.domain.settings import DEFAULT_SETTINGS
from identity.repo.profile_updates import fold_merged
from mcloud.events.v1 import (
    event_pb2,
    identity_events_pb2,
    loyalty_events_pb2,
    messaging_events_pb2,
    recommend_events_pb2,
)
from mcloud.identity.v1 import identity_pb2 as pb
from mcloud.identity.v1 import identity_pb2_grpc
from mcloud_common.bus import publish
from mcloud_common.clock import ManualClock
from mcloud_common.db import create_pool
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.ids import new_id_str
from mcloud_common.testing.services import running_service, wait_until
from mcloud_common.timestamps import set_timestamp, to_timestamp

SHARDS = 4  # IdentitySettings.stream_shards default, also what loyalty/messaging use


class Client:
    """One tenant's calls to a running identity service."""

    def __init__(self, stub, tenant: str | None = None) -> None:
        self.stub = stub
        self.tenant = tenant or str(uuid.uuid4())
        self.md = tenant_metadata(self.tenant)

    @staticmethod
    def _event(type_, *, user_id, channel, at, **fields) -> pb.InboundEvent:
        ev = pb.InboundEvent(type=type_, message_id=new_id_str(), user_id=user_id, channel=channel, **fields)
        if at is not None:
            ev.timestamp.CopyFrom(to_timestamp(at))
        return ev

    def identify(self, user_id: str, *, channel="web", at=None, **traits) -> pb.InboundEvent:
        return self._event(pb.CALL_TYPE_IDENTIFY, user_id=user_id, channel=channel, at=at,
                           traits_json=orjson.dumps(traits).decode())

    def track(self, user_id: str, name: str, *, channel="web", at=None, **props) -> pb.InboundEvent:
        return self._event(pb.CALL_TYPE_TRACK, user_id=user_id, channel=channel, at=at, name=name,
                           properties_json=orjson.dumps(props).decode())

    async def ingest(self, *events) -> list[str]:
        r = await self.stub.IngestEvents(pb.IngestEventsRequest(events=events), metadata=self.md)
        assert r.accepted == len(events), r
        return list(r.profile_ids)

    async def call(self, method: str, request: Message):
        return await getattr(self.stub, method)(request, metadata=self.md)

    async def profile(self, profile_id: str) -> pb.Profile:
        return (await self.call("GetProfile", pb.GetProfileRequest(profile_id=profile_id))).profile

    async def traits(self, profile_id: str) -> dict:
        return orjson.loads((await self.profile(profile_id)).traits_json)

    async def computed(self, profile_id: str) -> dict:
        return orjson.loads((await self.profile(profile_id)).computed_json)


@pytest.fixture
def client(identity) -> Client:
    return Client(identity[0])


@pytest.fixture
async def db(identity_db):
    pool = await create_pool(identity_db, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def bus_events(redis, tenant: str, type_: str, count: int) -> list[event_pb2.Event]:
    """identity's events of `type_` for `tenant` on the streams, once there are `count`."""
    found: list[event_pb2.Event] = []

    async def arrived() -> bool:
        found.clear()
        for shard in range(SHARDS):
            for _, fields in await redis.xrange(f"events.identity.{shard}"):
                ev = event_pb2.Event.FromString(fields[b"e"])
                if ev.type == type_ and ev.tenant_id == tenant:
                    found.append(ev)
        return len(found) >= count

    await wait_until(arrived, timeout=10, message=f"{count} {type_} events")
    return found


def unpacked(events: list[event_pb2.Event], message_type: type[Message]) -> list[Message]:
    out = []
    for ev in events:
        msg = message_type()
        ev.payload.Unpack(msg)
        out.append(msg)
    return out


async def invalid(coro, code: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert dict(err.value.trailing_metadata())["mcloud-error-code"] == code


# --- traits ------------------------------------------------------------------------------------------

async def test_a_crm_value_is_not_overwritten_by_the_website_and_a_late_older_event_changes_nothing(client, db):
    t = datetime.now(UTC) - timedelta(hours=1)
    [p] = await client.ingest(client.identify("u1", channel="crm", at=t, name="Rachel Green", plan="gold"))
    await client.ingest(client.identify("u1", channel="web", at=t + timedelta(minutes=5), name="rach", city="NYC"))
    assert await client.traits(p) == {"name": "Rachel Green", "plan": "gold", "city": "NYC"}
    # the CRM again, but an export older than what it said before: the newer value stays
    await client.ingest(client.identify("u1", channel="crm", at=t - timedelta(days=1), plan="free"))
    # a newer CRM value wins, and a stronger source wins over a weaker one whatever the time
    await client.ingest(client.identify("u1", channel="crm", at=t + timedelta(minutes=10), city="Boston"),
                        client.identify("u1", channel="server", at=t - timedelta(days=3), name="Rachel K. Green"))
    assert await client.traits(p) == {"name": "Rachel K. Green", "plan": "gold", "city": "Boston"}
    meta = await db.fetchval("SELECT traits_meta FROM profiles WHERE id = $1", p)
    assert meta["plan"]["source"] == "crm" and meta["city"]["source"] == "crm" and meta["name"]["source"] == "server"
    assert datetime.fromisoformat(meta["plan"]["at"]) == t


async def test_null_removes_a_trait_under_the_same_rules(client):
    t = datetime.now(UTC) - timedelta(hours=1)
    [p] = await client.ingest(client.identify("u2", channel="app", at=t, nickname="Rach", lang="en"))
    await client.ingest(client.identify("u2", channel="web", at=t + timedelta(minutes=1), nickname=None))
    assert (await client.traits(p))["nickname"] == "Rach"  # web ranks below app: not removed
    await client.ingest(client.identify("u2", channel="app", at=t + timedelta(minutes=2), nickname=None))
    assert await client.traits(p) == {"lang": "en"}
    await client.ingest(client.identify("u2", channel="app", at=t + timedelta(minutes=1), nickname="Old"))
    assert await client.traits(p) == {"lang": "en"}  # older than the removal


async def test_update_profile_sets_traits_as_server_adds_and_removes_tags_and_is_idempotent(client, db):
    [p] = await client.ingest(client.identify("u3", channel="crm", name="Monica", tier="silver"))
    r = await client.call("UpdateProfile", pb.UpdateProfileRequest(
        profile_id=p, traits_json='{"tier": "gold", "vip": true}', add_tags=["vip", "chef"], idempotency_key="k1"))
    assert orjson.loads(r.profile.traits_json) == {"name": "Monica", "tier": "gold", "vip": True}
    assert list(r.profile.tags) == ["vip", "chef"]
    # a weaker source does not overwrite what the server set
    await client.call("UpdateProfile", pb.UpdateProfileRequest(profile_id=p, traits_json='{"tier": "bronze"}',
                                                               source="ads", remove_tags=["chef"], add_tags=["nyc"]))
    profile = await client.profile(p)
    assert orjson.loads(profile.traits_json)["tier"] == "gold"
    assert list(profile.tags) == ["vip", "nyc"]
    # a retry with the same key gets the first answer and changes nothing
    again = await client.call("UpdateProfile", pb.UpdateProfileRequest(
        profile_id=p, traits_json='{"tier": "platinum"}', remove_tags=["vip"], idempotency_key="k1"))
    assert again == r
    assert (await client.traits(p))["tier"] == "gold"
    assert list((await client.profile(p)).tags) == ["vip", "nyc"]
    meta = await db.fetchval("SELECT traits_meta FROM profiles WHERE id = $1", p)
    assert meta["tier"]["source"] == "server" and meta["name"]["source"] == "crm"


async def test_update_profile_refuses_bad_input(client):
    [p] = await client.ingest(client.identify("u4", name="Ross"))
    call = client.call
    await invalid(call("UpdateProfile", pb.UpdateProfileRequest(profile_id=p, traits_json="{nope")), "invalid_json")
    await invalid(call("UpdateProfile", pb.UpdateProfileRequest(profile_id=p, traits_json="[1]")), "invalid_json")
    await invalid(call("UpdateProfile", pb.UpdateProfileRequest(profile_id=p, traits_json='{"a": "\\u0000"}')),
                  "invalid_character")
    await invalid(call("UpdateProfile", pb.UpdateProfileRequest(profile_id=p, add_tags=[""])), "invalid_tag")
    await invalid(call("UpdateProfile", pb.UpdateProfileRequest(profile_id=p, add_tags=["x" * 129])), "invalid_tag")
    await invalid(call("UpdateProfile", pb.UpdateProfileRequest(profile_id=p, add_tags=["a"], remove_tags=["a"])),
                  "conflicting_tags")
    await invalid(call("UpdateProfile", pb.UpdateProfileRequest(profile_id="not-a-uuid")), "invalid_profile_id")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call("UpdateProfile", pb.UpdateProfileRequest(profile_id=str(uuid.uuid4()), add_tags=["a"]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


# --- consent -----------------------------------------------------------------------------------------

async def test_consent_latest_change_wins_every_change_is_logged_and_changes_are_published(client, db, redis):
    [p] = await client.ingest(client.identify("u5", email="phoebe@example.com"))
    t = datetime(2026, 5, 1, tzinfo=UTC)

    async def consent(state, at, channel="email", **kw):
        request = pb.SetConsentRequest(profile_id=p, channel=channel, state=state, source="preference_center", **kw)
        request.at.CopyFrom(to_timestamp(at))
        return (await client.call("SetConsent", request)).state

    assert await consent(pb.CONSENT_STATE_GRANTED, t) == pb.CONSENT_STATE_GRANTED
    # an older withdrawal arriving late is logged, but the newer grant stands
    assert await consent(pb.CONSENT_STATE_WITHDRAWN, t - timedelta(days=1)) == pb.CONSENT_STATE_GRANTED
    assert await consent(pb.CONSENT_STATE_GRANTED, t) == pb.CONSENT_STATE_GRANTED  # a retry: nothing new
    assert await consent(pb.CONSENT_STATE_DENIED, t + timedelta(days=1)) == pb.CONSENT_STATE_DENIED
    assert await consent(pb.CONSENT_STATE_GRANTED, t, channel="sms", purpose="service") == pb.CONSENT_STATE_GRANTED

    profile = await client.profile(p)
    assert [(c.channel, c.purpose, c.state, c.source) for c in profile.consents] == [
        ("email", "marketing", pb.CONSENT_STATE_DENIED, "preference_center"),
        ("sms", "service", pb.CONSENT_STATE_GRANTED, "preference_center")]
    assert profile.consents[0].at == to_timestamp(t + timedelta(days=1))
    log = await db.fetch("SELECT channel, state, at FROM consent_log WHERE profile_id = $1 ORDER BY id", p)
    assert [(r["channel"], r["state"], r["at"]) for r in log] == [
        ("email", "granted", t), ("email", "withdrawn", t - timedelta(days=1)),
        ("email", "denied", t + timedelta(days=1)), ("sms", "granted", t)]
    changes = unpacked(await bus_events(redis, client.tenant, "consent.changed", 3), identity_events_pb2.ConsentChanged)
    assert [(c.profile_id, c.channel, c.purpose, c.state) for c in changes] == [
        (p, "email", "marketing", "granted"), (p, "email", "marketing", "denied"), (p, "sms", "service", "granted")]


async def test_set_consent_refuses_bad_input(client):
    [p] = await client.ingest(client.identify("u6", name="Joey"))
    call = client.call
    await invalid(call("SetConsent", pb.SetConsentRequest(profile_id=p, state=pb.CONSENT_STATE_GRANTED)),
                  "missing_channel")
    await invalid(call("SetConsent", pb.SetConsentRequest(profile_id=p, channel="fax", state=pb.CONSENT_STATE_GRANTED)),
                  "invalid_channel")
    await invalid(call("SetConsent", pb.SetConsentRequest(profile_id=p, channel="email")), "missing_state")
    await invalid(call("SetConsent", pb.SetConsentRequest(profile_id=p, channel="email", purpose="Bad Purpose",
                                                          state=pb.CONSENT_STATE_DENIED)), "invalid_purpose")


# --- computed traits, RFM, lifecycle ---------------------------------------------------------------

async def test_orders_views_and_cart_adds_keep_computed_traits_current(client, db, redis):
    now = datetime.now(UTC).replace(microsecond=0)
    u = "u7"
    p, *_ = await client.ingest(
        client.track(u, "Product Viewed", at=now - timedelta(hours=5), product_id="p1", category="shoes"),
        client.track(u, "Product Viewed", at=now - timedelta(hours=5), product_id="p1", category="shoes"),
        client.track(u, "Product Added", at=now - timedelta(hours=4), product_id="p2", category="bags"),
        client.track(u, "Product Added", at=now - timedelta(hours=4), product_id="p3", category="hats"),
        client.track(u, "Product Removed", at=now - timedelta(hours=4), product_id="p3"))
    c = await client.computed(p)
    assert c["cart"] == ["p2"]
    assert c["category_scores"] == {"shoes": 2, "bags": 3, "hats": 3}
    assert c["favourite_category"] == "bags"
    assert (await client.profile(p)).lifecycle_stage == "potential"
    await client.ingest(client.track(u, "Order Completed", at=now - timedelta(hours=3), order_id="o1", total=120.5,
                                     products=[{"product_id": "p2", "category": "bags", "price": 120.5}]))
    await client.ingest(client.track(u, "Order Completed", at=now - timedelta(hours=2), order_id="o2", revenue=79.5,
                                     products=[{"product_id": "p9", "category": "shoes"}]),
                        # the same order reported again by the store system: not counted twice
                        client.track(u, "Order Completed", at=now - timedelta(hours=2), order_id="o2", revenue=79.5,
                                     channel="pos"))
    c = await client.computed(p)
    assert c["order_count"] == 2
    assert c["lifetime_value"] == 200.0
    assert c["avg_order_value"] == 100.0
    assert datetime.fromisoformat(c["first_order_at"]) == now - timedelta(hours=3)
    assert datetime.fromisoformat(c["last_order_at"]) == now - timedelta(hours=2)
    assert c["cart"] == []
    assert c["category_scores"] == {"shoes": 7, "bags": 8, "hats": 3}
    assert c["favourite_category"] == "bags"
    assert c["rfm"] == {"r": 5, "f": 2, "m": 3, "score": "523"}
    assert datetime.fromisoformat(c["last_seen_at"]) == now - timedelta(hours=2)
    assert "store_visits" not in c
    row = await db.fetchrow("SELECT lifecycle_stage, lifecycle_changed_at FROM profiles WHERE id = $1", p)
    assert row["lifecycle_stage"] == "repeat" and row["lifecycle_changed_at"] is not None
    changes = unpacked(await bus_events(redis, client.tenant, "lifecycle.changed", 2),
                       identity_events_pb2.LifecycleChanged)
    assert [(x.profile_id, x.from_stage, x.to_stage) for x in changes] == [
        (p, "potential", "first_purchase"), (p, "first_purchase", "repeat")]


async def test_store_visits_count_visit_events_and_pos_orders_once_a_day(client):
    day = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0) - timedelta(days=3)
    u = "u8"
    [p] = await client.ingest(client.track(u, "Store Visited", at=day, store_id="s1"))
    await client.ingest(client.track(u, "Order Completed", channel="pos", at=day + timedelta(hours=1), total=10),
                        client.track(u, "Order Completed", channel="pos", at=day + timedelta(days=1), total=10),
                        client.track(u, "Store Visited", at=day + timedelta(days=2), store_id="s2"))
    c = await client.computed(p)
    assert c["store_visits"] == 3
    assert datetime.fromisoformat(c["last_store_visit_at"]) == day + timedelta(days=2)


async def test_tenant_event_names_and_lifecycle_thresholds_are_used(client):
    settings = orjson.loads((await client.call("GetSettings", pb.GetSettingsRequest())).settings_json)
    settings["computed_events"]["order"] = ["Purchase"]
    settings["lifecycle"] = {"repeat_min_orders": 2, "retained_min_orders": 3, "churn_after_days": 30}
    await client.call("UpdateSettings", pb.UpdateSettingsRequest(settings_json=orjson.dumps(settings).decode()))
    now = datetime.now(UTC)
    p = (await client.ingest(*(client.track("u9", "Purchase", at=now - timedelta(hours=h), total=1)
                               for h in (1, 2, 3))))[0]
    assert (await client.profile(p)).lifecycle_stage == "retained"
    await client.ingest(client.track("u9", "Order Completed", total=1))  # no longer an order name here
    assert (await client.computed(p))["order_count"] == 3
    [old] = await client.ingest(client.track("u10", "Purchase", at=now - timedelta(days=45), total=500))
    assert (await client.profile(old)).lifecycle_stage == "churned"  # an imported old order: churned at once


async def test_last_seen_moves_with_any_call_and_is_rewritten_at_most_hourly_for_plain_calls(client, db):
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    [p] = await client.ingest(client.track("u14", "Page Viewed", at=t))
    assert datetime.fromisoformat((await client.computed(p))["last_seen_at"]) == t
    await client.ingest(client.track("u14", "Page Viewed", at=t + timedelta(minutes=30)))
    assert datetime.fromisoformat((await client.computed(p))["last_seen_at"]) == t  # within the hour: no write
    await client.ingest(client.track("u14", "Page Viewed", at=t + timedelta(hours=2)),
                        client.track("u14", "Page Viewed", at=t + timedelta(hours=1)))
    assert datetime.fromisoformat((await client.computed(p))["last_seen_at"]) == t + timedelta(hours=2)
    await client.ingest(client.track("u14", "Product Viewed", at=t + timedelta(hours=2, minutes=10), category="x"))
    assert datetime.fromisoformat((await client.computed(p))["last_seen_at"]) == t + timedelta(hours=2, minutes=10)


async def test_folding_a_merged_profile_adds_its_orders_tags_and_consents_to_the_survivor(client, db):
    now = datetime.now(UTC)
    [a] = await client.ingest(client.track("u15", "Order Completed", at=now - timedelta(days=3), total=40))
    b, _ = await client.ingest(client.track("u16", "Order Completed", at=now - timedelta(days=2), total=60),
                              client.track("u16", "Order Completed", at=now - timedelta(days=1), total=20))
    await client.call("UpdateProfile", pb.UpdateProfileRequest(profile_id=a, add_tags=["vip"]))
    await client.call("UpdateProfile", pb.UpdateProfileRequest(profile_id=b, add_tags=["nyc", "vip"]))
    consent = pb.SetConsentRequest(profile_id=b, channel="sms", state=pb.CONSENT_STATE_GRANTED)
    await client.call("SetConsent", consent)
    async with db.acquire() as conn, conn.transaction():
        events = await fold_merged(conn, client.tenant, DEFAULT_SETTINGS, [(b, a)], now)
    assert [(e.type, e.profile_id) for e in events] == [("lifecycle.changed", a)]
    assert unpacked(events, identity_events_pb2.LifecycleChanged)[0].to_stage == "repeat"
    profile = await client.profile(a)
    c = orjson.loads(profile.computed_json)
    assert (c["order_count"], c["lifetime_value"], c["rfm"]["score"]) == (3, 120.0, "532")
    assert profile.lifecycle_stage == "repeat"
    assert list(profile.tags) == ["vip", "nyc"]
    assert [(x.channel, x.state) for x in profile.consents] == [("sms", pb.CONSENT_STATE_GRANTED)]


@pytest.fixture
async def clocked(identity_db, settings_for):
    """identity on a manual clock (set to now), without background jobs: the test runs the pass."""
    clock = ManualClock(datetime.now(UTC))
    async with running_service(build, settings_for(identity_db), clock=clock, jobs=False) as (_, channel):
        yield Client(identity_pb2_grpc.IdentityServiceStub(channel)), clock


async def test_the_periodic_pass_churns_customers_after_the_threshold_and_rescores_recency(clocked, db, redis):
    client, clock = clocked
    [p] = await client.ingest(client.track("u11", "Order Completed", at=clock.now() - timedelta(days=100),
                                           order_id="o1", total=60))
    [q] = await client.ingest(client.track("u12", "Order Completed", order_id="o1", total=60))
    assert (await client.profile(p)).lifecycle_stage == "first_purchase"
    assert (await client.computed(p))["rfm"] == {"r": 3, "f": 1, "m": 2, "score": "312"}  # 100 days ago
    assert (await client.computed(q))["rfm"]["score"] == "512"
    assert (await lifecycle_pass(db, clock, SHARDS)).churned == 0

    clock.advance(days=80)  # p's last order is 180 days old: the default churn_after_days
    await db.execute("DELETE FROM dirty_profiles")
    result = await lifecycle_pass(db, clock, SHARDS)
    assert result.churned == 1
    assert (await client.profile(p)).lifecycle_stage == "churned"
    assert (await client.profile(q)).lifecycle_stage == "first_purchase"
    assert (await client.computed(p))["rfm"]["score"] == "312"  # r drops after 180 days, not at 180
    assert (await client.computed(q))["rfm"]["score"] == "412"  # 80 days
    clock.advance(days=1)
    assert (await lifecycle_pass(db, clock, SHARDS)).churned == 0  # already churned: no second event
    assert (await client.computed(p))["rfm"]["score"] == "212"
    changes = unpacked(await bus_events(redis, client.tenant, "lifecycle.changed", 3),
                       identity_events_pb2.LifecycleChanged)
    assert [(x.from_stage, x.to_stage) for x in changes if x.profile_id == p] == [
        ("potential", "first_purchase"), ("first_purchase", "churned")]
    churned = next(ev for ev in await bus_events(redis, client.tenant, "lifecycle.changed", 3)
                   if unpacked([ev], identity_events_pb2.LifecycleChanged)[0].to_stage == "churned")
    assert churned.occurred_at == to_timestamp(clock.now() - timedelta(days=1))  # the pass's clock
    assert await db.fetchval("SELECT count(*) FROM dirty_profiles WHERE profile_id = $1", p) == 1

    # a churned customer who orders again is back in the stage their order count gives
    await client.ingest(client.track("u11", "Order Completed", order_id="o2", total=10))
    assert (await client.profile(p)).lifecycle_stage == "repeat"


# --- events from loyalty and messaging ----------------------------------------------------------------

def bus_event(tenant: str, type_: str, profile_id: str, payload: Message, *, at: datetime | None = None,
              source: str = "loyalty") -> event_pb2.Event:
    ev = event_pb2.Event(id=new_id_str(), tenant_id=tenant, type=type_, profile_id=profile_id, source=source)
    set_timestamp(ev.occurred_at, at or datetime.now(UTC))
    ev.payload.Pack(payload)
    return ev


async def test_loyalty_and_messaging_events_update_the_profile_once_each(clocked, db, redis):
    # the service runs no jobs: this test's own consumer group applies the events, cycle by cycle
    client, _ = clocked
    consumer = make_consumer(db, redis, SHARDS, group=f"identity-test-{uuid.uuid4().hex[:8]}")
    t = client.tenant
    # a visitor who is later recognised: events about her old anonymous profile land on the survivor
    [known] = await client.ingest(client.identify("u13", email="rachel@example.com"))
    anon = await client.stub.IngestEvents(pb.IngestEventsRequest(events=[pb.InboundEvent(
        type=pb.CALL_TYPE_TRACK, message_id=new_id_str(), anonymous_id="dev-1", name="Page Viewed", channel="web")]),
        metadata=client.md)
    merged_away = anon.profile_ids[0]
    await client.ingest(pb.InboundEvent(type=pb.CALL_TYPE_IDENTIFY, message_id=new_id_str(), user_id="u13",
                                        anonymous_id="dev-1", channel="web"))
    assert (await client.profile(merged_away)).id == known

    opened_at = datetime(2026, 6, 1, 9, tzinfo=UTC)
    opened = bus_event(t, "message.opened", merged_away, messaging_events_pb2.MessageOpened(
        message=messaging_events_pb2.MessageRef(message_id="m1", profile_id=merged_away, channel="email")),
        at=opened_at, source="messaging")
    await publish(redis, [
        bus_event(t, "member.enrolled", known, loyalty_events_pb2.MemberEnrolled(
            profile_id=known, program_id="prog", tier_code="silver")),
        bus_event(t, "tier.changed", known, loyalty_events_pb2.TierChanged(
            profile_id=known, from_tier_code="silver", to_tier_code="gold", direction="upgrade")),
        bus_event(t, "tier.changed", str(uuid.uuid4()), loyalty_events_pb2.TierChanged(to_tier_code="gold")),
    ], "loyalty", SHARDS)
    await publish(redis, [
        opened, opened,  # delivered twice: counted once
        bus_event(t, "message.opened", known, messaging_events_pb2.MessageOpened(
            message=messaging_events_pb2.MessageRef(message_id="m2", profile_id=known, channel="email")),
            at=opened_at - timedelta(days=1), source="messaging"),
        bus_event(t, "message.opened", known, messaging_events_pb2.MessageOpened(
            message=messaging_events_pb2.MessageRef(message_id="m3", profile_id=known, channel="push")),
            at=opened_at - timedelta(days=2), source="messaging"),
        bus_event(t, "message.clicked", known, messaging_events_pb2.MessageClicked(
            message=messaging_events_pb2.MessageRef(message_id="m1", profile_id=known, channel="email"),
            url="https://shop.example/x"), at=opened_at + timedelta(minutes=5), source="messaging"),
        bus_event(t, "message.unsubscribed", known, messaging_events_pb2.MessageUnsubscribed(
            profile_id=known, channel="email", source="link"), at=opened_at + timedelta(minutes=6),
            source="messaging"),
    ], "messaging", SHARDS)

    async def applied():
        await consumer.run_once()
        c = await client.computed(known)
        return c if c.get("email_clicks") == 1 and c.get("email_opens") == 2 and c.get("loyalty_tier") else None

    c = await wait_until(applied, timeout=15, message="loyalty and messaging events applied")
    assert c["loyalty_tier"] == "gold" and c["loyalty_member"] is True
    assert datetime.fromisoformat(c["last_engaged_at"]) == opened_at + timedelta(minutes=5)

    async def withdrawn():
        await consumer.run_once()
        consents = (await client.profile(known)).consents
        return consents if consents else None

    [consent] = await wait_until(withdrawn, timeout=15, message="unsubscribe recorded")
    assert (consent.channel, consent.purpose, consent.state, consent.source) == (
        "email", "marketing", pb.CONSENT_STATE_WITHDRAWN, "messaging")
    [change] = unpacked(await bus_events(redis, t, "consent.changed", 1), identity_events_pb2.ConsentChanged)
    assert (change.profile_id, change.channel, change.state) == (known, "email", "withdrawn")
    assert (await client.computed(known))["email_opens"] == 2  # nothing was applied twice
    assert consumer.duplicates_total == 1


async def test_a_locked_intent_from_recommend_becomes_computed_traits(clocked, db, redis):
    client, _ = clocked
    consumer = make_consumer(db, redis, SHARDS, group=f"identity-test-{uuid.uuid4().hex[:8]}")
    t = client.tenant
    [known] = await client.ingest(client.identify("u21", email="runner@example.com"))
    locked_at = datetime(2026, 6, 1, 9, tzinfo=UTC)
    await publish(redis, [bus_event(t, "intent.locked", known, recommend_events_pb2.IntentLocked(
        profile_id=known, item_id="pegasus-40", category="running_shoes", cross_categories=["socks"]),
        at=locked_at, source="recommend")], "recommend", SHARDS)

    async def applied():
        await consumer.run_once()
        c = await client.computed(known)
        return c if c.get("intent_item") else None

    c = await wait_until(applied, timeout=15, message="intent.locked applied")
    assert c["intent_item"] == "pegasus-40" and c["intent_category"] == "running_shoes"
    assert datetime.fromisoformat(c["intent_locked_at"]) == locked_at
