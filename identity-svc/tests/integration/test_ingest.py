"""Ingest through the real gRPC server into real PostgreSQL, published to real Valkey."""

from __future__ import annotations

import uuid

import asyncpg
import grpc
import orjson
import pytest

from mcloud.events.v1 import event_pb2, identity_events_pb2
from mcloud.identity.v1 import identity_pb2 as pb
from mcloud_common.bus import shard_of
from mcloud_common.db import asyncpg_dsn
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.testing.services import wait_until


def track(message_id: str, *, anonymous_id="", user_id="", event="Product Viewed", **props):
    return pb.InboundEvent(type=pb.CALL_TYPE_TRACK, message_id=message_id, anonymous_id=anonymous_id,
                           user_id=user_id, name=event, properties_json=orjson.dumps(props).decode(),
                           channel="web")


def identify(message_id: str, *, anonymous_id="", user_id="", **traits):
    return pb.InboundEvent(type=pb.CALL_TYPE_IDENTIFY, message_id=message_id, anonymous_id=anonymous_id,
                           user_id=user_id, traits_json=orjson.dumps(traits).decode(), channel="web")


@pytest.fixture
def tenant():
    return str(uuid.uuid4())


async def ingest(stub, tenant, *events):
    return await stub.IngestEvents(pb.IngestEventsRequest(events=events), metadata=tenant_metadata(tenant))


async def stream_events(redis, profile_id: str, shards: int = 4) -> list[event_pb2.Event]:
    entries = await redis.xrange(f"events.identity.{shard_of(profile_id, shards)}")
    events = [event_pb2.Event.FromString(fields[b"e"]) for _, fields in entries]
    return [e for e in events if e.profile_id == profile_id]


async def test_anonymous_browsing_then_sign_up_is_one_profile_with_all_history(identity, tenant, redis):
    stub, _ = identity
    anon = f"anon-{uuid.uuid4()}"
    r1 = await ingest(stub, tenant, track("m1", anonymous_id=anon, product_id="shoe-1"),
                      track("m2", anonymous_id=anon, product_id="shoe-1"))
    assert r1.accepted == 2
    anon_profile = r1.profile_ids[0]
    # She signs up: identify with her user id and email on the same device.
    r2 = await ingest(stub, tenant, identify("m3", anonymous_id=anon, user_id="rachel",
                                              email=" Rachel@Example.com ", name="Rachel"))
    assert r2.profile_ids[0] == anon_profile  # first identification attaches, no new profile

    by_email = await stub.GetProfile(pb.GetProfileRequest(identifier=pb.Identifier(
        type="email", value="rachel@example.com")), metadata=tenant_metadata(tenant))
    assert by_email.profile.id == anon_profile
    assert {(i.type, i.value) for i in by_email.profile.identifiers} == {
        ("anonymous_id", anon), ("user_id", "rachel"), ("email", "rachel@example.com")}
    assert orjson.loads(by_email.profile.traits_json)["name"] == "Rachel"

    events = await stub.ListProfileEvents(pb.ListProfileEventsRequest(profile_id=anon_profile),
                                          metadata=tenant_metadata(tenant))
    assert [e.message_id for e in events.events] == ["m3", "m2", "m1"]
    # Every accepted event reaches the stream through the outbox.
    published = await wait_until(lambda: _count(redis, anon_profile, 3), message="3 events on the stream")
    assert [e.message_id for e in published] == ["m1", "m2", "m3"]


async def _count(redis, profile_id, n):
    events = [e for e in await stream_events(redis, profile_id) if e.type in ("track", "identify", "page")]
    return events if len(events) >= n else None


async def test_a_known_person_logging_in_on_a_new_device_merges_that_device_history(identity, tenant, redis):
    stub, _ = identity
    known = await ingest(stub, tenant, identify("k1", user_id="u-42", anonymous_id="laptop"))
    device = await ingest(stub, tenant, track("k2", anonymous_id="phone", product_id="watch"))
    assert known.profile_ids[0] != device.profile_ids[0]
    login = await ingest(stub, tenant, track("k3", anonymous_id="phone", user_id="u-42", event="Signed In"))
    survivor, merged = known.profile_ids[0], device.profile_ids[0]
    assert login.profile_ids[0] == survivor, login
    # Looking up by the merged profile's old id or by its device lands on the survivor.
    for request in (pb.GetProfileRequest(profile_id=merged),
                    pb.GetProfileRequest(identifier=pb.Identifier(type="anonymous_id", value="phone"))):
        reply = await stub.GetProfile(request, metadata=tenant_metadata(tenant))
        assert reply.profile.id == survivor
        assert merged in reply.profile.merged_from
    merge_events = await wait_until(
        lambda: _merged(redis, survivor), message="profile.merged on the stream")
    payload = identity_events_pb2.ProfileMerged()
    merge_events[0].payload.Unpack(payload)
    assert (payload.from_profile_id, payload.into_profile_id) == (merged, survivor)


async def _merged(redis, survivor):
    return [e for e in await stream_events(redis, survivor) if e.type == "profile.merged"]


async def test_repeated_message_ids_are_stored_once(identity, tenant, identity_db):
    stub, _ = identity
    first = await ingest(stub, tenant, track("dup-1", anonymous_id="a"), track("dup-1", anonymous_id="a"))
    again = await ingest(stub, tenant, track("dup-1", anonymous_id="a"), track("dup-2", anonymous_id="a"))
    assert (first.accepted, first.duplicates) == (1, 1)
    assert (again.accepted, again.duplicates) == (1, 1)
    conn = await asyncpg.connect(asyncpg_dsn(identity_db))
    try:
        stored = await conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1", uuid.UUID(tenant))
    finally:
        await conn.close()
    assert stored == 2


async def test_invalid_events_are_reported_per_index_and_the_valid_ones_kept(identity, tenant):
    stub, _ = identity
    reply = await ingest(stub, tenant,
                         track("v1", anonymous_id="a"),
                         pb.InboundEvent(type=pb.CALL_TYPE_TRACK, message_id="v2", anonymous_id="a"),  # no name
                         track("v3"),  # no identity
                         pb.InboundEvent(type=pb.CALL_TYPE_TRACK, message_id="v4", anonymous_id="a",
                                         name="x", properties_json="[1]"),
                         track("v5", anonymous_id="a"))
    assert reply.accepted == 2
    assert [(r.index, r.code) for r in reply.rejected] == [
        (1, "missing_event"), (2, "missing_identity"), (3, "invalid_json")]
    assert reply.profile_ids[0] and reply.profile_ids[4] and not reply.profile_ids[1]


async def test_one_tenant_never_sees_another_tenants_profile(identity, tenant):
    stub, _ = identity
    reply = await ingest(stub, tenant, identify("t1", user_id="secret-person"))
    other = str(uuid.uuid4())
    for request in (pb.GetProfileRequest(profile_id=reply.profile_ids[0]),
                    pb.GetProfileRequest(identifier=pb.Identifier(type="user_id", value="secret-person"))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetProfile(request, metadata=tenant_metadata(other))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert dict(err.value.trailing_metadata())["mcloud-error-code"] == "profile_not_found"


async def test_calls_without_a_tenant_are_refused(identity):
    stub, _ = identity
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetProfile(pb.GetProfileRequest(profile_id=str(uuid.uuid4())))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_events_committed_while_the_relay_is_dead_are_published_after_it_restarts(
        identity_db, settings_for, tenant, redis):
    """The relay is killed between identity's commit and the publish: nothing is lost."""
    from identity.app import build
    from mcloud.identity.v1 import identity_pb2_grpc
    from mcloud_common.bus import OutboxRelay
    from mcloud_common.db import create_pool
    from mcloud_common.testing.services import running_service

    async with running_service(build, settings_for(identity_db), relay=False) as (_, channel):
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        reply = await ingest(stub, tenant, track("r1", anonymous_id="relay-test"),
                             track("r2", anonymous_id="relay-test"))
        profile = reply.profile_ids[0]
    assert await stream_events(redis, profile) == []  # committed, not yet published
    pool = await create_pool(identity_db)
    try:
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 2
        relay = OutboxRelay(pool, redis)  # "restart": a fresh relay over the same outbox
        relay.start()
        try:
            published = await wait_until(lambda: _count(redis, profile, 2), message="events published")
        finally:
            await relay.stop()
        assert [e.message_id for e in published] == ["r1", "r2"]
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        await pool.close()


async def test_nul_characters_and_overlong_emails_are_refused_per_event_not_per_batch(identity, tenant):
    stub, _ = identity
    reply = await ingest(stub, tenant,
                         track("n1", anonymous_id="nul-person", note="fine"),
                         track("n2", anonymous_id="nul-person", note="bad\u0000value"),
                         track("n3", anonymous_id="nul\u0000id"),
                         identify("n4", user_id="long-email", email="x" * 8000 + "@example.com"),
                         track("n5", anonymous_id="nul-person", note="literal \\u0000 is fine"))
    assert [(r.index, r.code) for r in reply.rejected] == [(1, "invalid_character"), (2, "invalid_character")]
    assert reply.accepted == 3
    profile = await stub.GetProfile(pb.GetProfileRequest(identifier=pb.Identifier(
        type="user_id", value="long-email")), metadata=tenant_metadata(tenant))
    assert [i.type for i in profile.profile.identifiers] == ["user_id"]  # not an email identifier


async def test_a_value_the_database_refuses_rejects_that_event_only(identity, tenant, identity_db):
    stub, _ = identity
    conn = await asyncpg.connect(asyncpg_dsn(identity_db))
    try:  # the database itself refuses events named "poison" (a data exception, SQLSTATE 22023)
        await conn.execute("""
            CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.name = 'poison' THEN RAISE EXCEPTION 'refused' USING ERRCODE = '22023'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_poison BEFORE INSERT ON events_default FOR EACH ROW EXECUTE FUNCTION refuse_poison();
        """)
        for part in await conn.fetch("SELECT inhrelid::regclass::text AS t FROM pg_inherits "
                                     "WHERE inhparent = 'events'::regclass AND inhrelid::regclass::text <> "
                                     "'events_default'"):
            await conn.execute(f"CREATE TRIGGER refuse_poison BEFORE INSERT ON {part['t']} "
                               "FOR EACH ROW EXECUTE FUNCTION refuse_poison()")
    finally:
        await conn.close()
    reply = await ingest(stub, tenant, track("p1", anonymous_id="pz"), track("p2", anonymous_id="pz", event="poison"),
                         track("p3", anonymous_id="pz"))
    assert [(r.index, r.code) for r in reply.rejected] == [(1, "unstorable_value")]
    assert reply.accepted == 2
    events = await stub.ListProfileEvents(pb.ListProfileEventsRequest(profile_id=reply.profile_ids[0]),
                                          metadata=tenant_metadata(tenant))
    assert sorted(e.message_id for e in events.events) == ["p1", "p3"]


async def test_several_anonymous_profiles_merging_into_one_person_keep_all_their_traits(identity, tenant):
    stub, _ = identity
    await ingest(stub, tenant, identify("s0", user_id="u-fold", plan="gold"))
    await ingest(stub, tenant, identify("s1", anonymous_id="fold-a1", from_a1=1),
                 identify("s2", anonymous_id="fold-a2", from_a2=1, plan="anon-guess"))
    reply = await ingest(stub, tenant, identify("s3", user_id="u-fold", anonymous_id="fold-a1"),
                         identify("s4", user_id="u-fold", anonymous_id="fold-a2"))
    survivor = await stub.GetProfile(pb.GetProfileRequest(profile_id=reply.profile_ids[0]),
                                     metadata=tenant_metadata(tenant))
    traits = orjson.loads(survivor.profile.traits_json)
    assert traits == {"plan": "gold", "from_a1": 1, "from_a2": 1}
    assert len(survivor.profile.merged_from) == 2


async def test_concurrent_batches_identifying_the_same_people_in_opposite_orders_all_succeed(identity, tenant):
    import asyncio

    stub, _ = identity
    people = [f"conc-{i}" for i in range(30)]

    def batch(n: int, order: list[str]):
        return [identify(f"c{n}-{p}", user_id=p, anonymous_id=f"{p}-dev{n % 3}", seen=n) for p in order]

    replies = await asyncio.gather(*(
        ingest(stub, tenant, *batch(n, people if n % 2 else people[::-1])) for n in range(12)))
    assert all(r.accepted == len(people) and not r.rejected for r in replies)
    for p in people:
        found = {(await stub.GetProfile(pb.GetProfileRequest(identifier=pb.Identifier(type=t, value=v)),
                                        metadata=tenant_metadata(tenant))).profile.id
                 for t, v in [("user_id", p), ("anonymous_id", f"{p}-dev0"), ("anonymous_id", f"{p}-dev1"),
                              ("anonymous_id", f"{p}-dev2")]}
        assert len(found) == 1, f"{p} is spread over {found}"


async def test_a_forged_page_token_is_invalid_argument(identity, tenant):
    stub, _ = identity
    reply = await ingest(stub, tenant, track("pt1", anonymous_id="pager"))
    for token in ("2026-01-01T00:00:00+00:00|not-a-uuid", "2026-01-01T00:00:00|" + str(uuid.uuid4()), "junk"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListProfileEvents(pb.ListProfileEventsRequest(profile_id=reply.profile_ids[0],
                                                                     page_token=token),
                                         metadata=tenant_metadata(tenant))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
