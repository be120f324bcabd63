"""Messaging reacting to identity's events on the bus (real Valkey streams, real PostgreSQL): traits
and consent reach the contact, a merge folds the person (never re-subscribing anyone), an erasure
leaves a tombstone and no history; and fill_contacts completing contacts from identity's GetProfile
(a small fake identity gRPC server)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import orjson
import pytest

from mcloud.events.v1 import event_pb2, identity_events_pb2
from mcloud.identity.v1 import identity_pb2, identity_pb2_grpc
from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common import errors
from mcloud_common.bus import publish
from mcloud_common.grpc_client import make_channel
from mcloud_common.grpc_server import GrpcService, tenant_id
from mcloud_common.ids import new_id_str
from mcloud_common.testing.services import wait_until
from messaging.repo import contacts, inbox, suppressions
from messaging.repo.contacts import PARTIAL

SHARDS = 4


def identity_event(tenant: str, type_: str, profile_id: str, payload) -> event_pb2.Event:
    event = event_pb2.Event(id=new_id_str(), tenant_id=tenant, type=type_, profile_id=profile_id, source="identity")
    event.payload.Pack(payload)
    return event


def identified(tenant: str, pid: str, **traits) -> event_pb2.Event:
    return identity_event(tenant, "profile.identified", pid, identity_events_pb2.ProfileIdentified(
        profile_id=pid, traits_json=orjson.dumps(traits).decode()))


def consent(tenant: str, pid: str, channel: str, state: str, purpose: str = "marketing") -> event_pb2.Event:
    return identity_event(tenant, "consent.changed", pid, identity_events_pb2.ConsentChanged(
        profile_id=pid, channel=channel, purpose=purpose, state=state))


async def contact_row(db, tenant: str, pid: str):
    return await db.fetchrow("SELECT * FROM contacts WHERE tenant_id = $1 AND profile_id = $2",
                             uuid.UUID(tenant), uuid.UUID(pid))


@pytest.mark.without_jobs
async def test_identified_traits_and_consent_reach_the_contact(api, db, feed):
    pid = str(uuid.uuid4())
    await feed(identified(api.tenant, pid, email="Rachel@Example.COM", phone="+86 138 0013 8000", locale="zh_CN",
                          timezone="Asia/Shanghai", first_name="Rachel", push_token="tok-1"),
               consent(api.tenant, pid, "email", "denied"),
               consent(api.tenant, pid, "sms", "withdrawn", purpose="analytics"))
    row = await contact_row(db, api.tenant, pid)
    assert (row["email"], row["phone"], row["locale"], row["timezone"]) == (
        "Rachel@example.com", "+8613800138000", "zh-CN", "Asia/Shanghai")
    assert row["push_tokens"] == ["tok-1"] and orjson.loads(row["traits"])["first_name"] == "Rachel"
    assert orjson.loads(row["consent"]) == {"email": "denied"}  # other purposes do not gate sends
    assert row["synced_at"] == PARTIAL  # known from events only: completed from identity on the first send

    # invalid values stay out of the address columns; the last valid ones are kept
    await feed(identified(api.tenant, pid, email="not-an-email", phone="12", timezone="Nowhere/Town"),
               consent(api.tenant, pid, "email", "granted"))
    row = await contact_row(db, api.tenant, pid)
    assert (row["email"], row["phone"], row["timezone"]) == ("Rachel@example.com", "+8613800138000", "Asia/Shanghai")
    assert orjson.loads(row["traits"])["email"] == "not-an-email"
    assert orjson.loads(row["consent"]) == {"email": "granted"}


@pytest.mark.without_jobs
async def test_a_replayed_event_is_applied_once(api, db, feed, redis):
    pid = str(uuid.uuid4())
    event = identified(api.tenant, pid, email="a@example.com")
    await feed(event, event)
    await feed(event)
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE tenant_id = $1", uuid.UUID(api.tenant)) == 1


@pytest.mark.without_jobs
async def test_a_merge_folds_the_person_and_keeps_every_opt_out(api, db, feed, pool, clock):
    src, dst = str(uuid.uuid4()), str(uuid.uuid4())
    await feed(identified(api.tenant, src, email="old@example.com", phone="+4915112345678", city="Berlin"),
               identified(api.tenant, dst, email="new@example.com", first_name="Rachel"),
               consent(api.tenant, src, "sms", "denied"))
    await api.call("SetPreferences", pb.SetPreferencesRequest(preferences=pb.Preferences(
        profile_id=src, channels=[pb.ChannelPreference(channel=pb.CHANNEL_EMAIL, opted_in=False)],
        timezone="Europe/Berlin")))
    await api.call("SetPreferences", pb.SetPreferencesRequest(preferences=pb.Preferences(
        profile_id=dst, channels=[pb.ChannelPreference(channel=pb.CHANNEL_EMAIL, opted_in=True),
                                  pb.ChannelPreference(channel=pb.CHANNEL_PUSH, opted_in=False)], locale="en")))
    await api.call("Suppress", pb.SuppressRequest(channel=pb.CHANNEL_SMS, profile_id=src))
    await api.call("Suppress", pb.SuppressRequest(channel=pb.CHANNEL_PUSH, profile_id=src))
    await api.call("Suppress", pb.SuppressRequest(channel=pb.CHANNEL_PUSH, profile_id=dst))
    async with pool.acquire() as conn:
        for pid, opens in ((src, 2), (dst, 3)):
            await conn.execute("INSERT INTO engagement (tenant_id, profile_id, channel, hour_of_week, opens, clicks, "
                               "last_at) VALUES ($1, $2, 'email', 10, $3, 1, $4)", api.tenant, pid, opens, clock.now())
        await inbox.add(conn, api.tenant, message_id=new_id_str(), profile_id=src, title="hi", now=clock.now())

    await feed(identity_event(api.tenant, "profile.merged", dst, identity_events_pb2.ProfileMerged(
        from_profile_id=src, into_profile_id=dst, reason="manual")))

    assert await contact_row(db, api.tenant, src) is None
    row = await contact_row(db, api.tenant, dst)
    assert (row["email"], row["phone"]) == ("new@example.com", "+4915112345678")  # into's kept, blanks filled
    assert orjson.loads(row["traits"]) == {"email": "new@example.com", "first_name": "Rachel", "city": "Berlin",
                                           "phone": "+4915112345678"}
    assert orjson.loads(row["consent"]) == {"sms": "denied"}
    got = (await api.call("GetPreferences", pb.GetPreferencesRequest(profile_id=dst))).preferences
    assert {c.channel: c.opted_in for c in got.channels} == {pb.CHANNEL_EMAIL: False, pb.CHANNEL_PUSH: False}
    assert (got.locale, got.timezone) == ("en", "Europe/Berlin")
    channels = await db.fetch("SELECT channel FROM suppressions WHERE tenant_id = $1 AND profile_id = $2 "
                              "ORDER BY channel", uuid.UUID(api.tenant), uuid.UUID(dst))
    assert [r["channel"] for r in channels] == ["push", "sms"]
    assert await db.fetchval("SELECT opens FROM engagement WHERE profile_id = $1", uuid.UUID(dst)) == 5
    assert await db.fetchval("SELECT count(*) FROM engagement WHERE profile_id = $1", uuid.UUID(src)) == 0
    listed = await api.call("ListInbox", pb.ListInboxRequest(profile_id=dst))
    assert [m.title for m in listed.messages] == ["hi"]


@pytest.mark.without_jobs
async def test_an_erasure_leaves_a_tombstone_and_no_history(api, db, feed, pool, clock):
    pid = str(uuid.uuid4())
    await feed(identified(api.tenant, pid, email="gone@example.com", first_name="Gone"))
    await api.call("SetPreferences", pb.SetPreferencesRequest(preferences=pb.Preferences(profile_id=pid,
                                                                                         locale="en")))
    await api.call("Suppress", pb.SuppressRequest(channel=pb.CHANNEL_EMAIL, profile_id=pid,
                                                  address="gone@example.com",
                                                  reason=pb.SUPPRESSION_REASON_HARD_BOUNCE))
    await api.call("Suppress", pb.SuppressRequest(profile_id=pid))
    mid = new_id_str()
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO messages (tenant_id, id, profile_id, requested_channel, template_id, status, idempotency_key,"
            " due_at, queued_at) VALUES ($1, $2, $3, 'email', $4, 'queued', 'k', $5, $5)",
            api.tenant, mid, pid, uuid.uuid4(), clock.now())
        await conn.execute("INSERT INTO message_events (tenant_id, provider_event_id, message_id, kind, occurred_at) "
                           "VALUES ($1, 'e1', $2, 'delivered', $3)", api.tenant, mid, clock.now())
        await inbox.add(conn, api.tenant, message_id=mid, profile_id=pid, title="hi", now=clock.now())

    erased = identity_event(api.tenant, "profile.erased", pid, identity_events_pb2.ProfileErased(profile_id=pid))
    await feed(erased)
    await feed(identified(api.tenant, pid, email="back@example.com"))  # late news about an erased person

    row = await contact_row(db, api.tenant, pid)
    assert row["erased"] and row["email"] is None and orjson.loads(row["traits"]) == {}
    tenant = uuid.UUID(api.tenant)
    for table in ("messages", "message_events", "inbox", "preferences"):
        assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", tenant) == 0, table
    kept = await db.fetch("SELECT address, profile_id FROM suppressions WHERE tenant_id = $1", tenant)
    assert [(r["address"], r["profile_id"]) for r in kept] == [("gone@example.com", None)]
    async with pool.acquire() as conn:
        found = await contacts.load_contacts(conn, api.tenant, [pid])
        assert found[pid].erased
        assert await suppressions.suppressed(conn, api.tenant, [("", "email", "GONE@example.com")])


async def test_the_running_service_consumes_identity_events(messaging, api, db, redis):
    pid = str(uuid.uuid4())
    await publish(redis, [identified(api.tenant, pid, email="live@example.com")], "identity", SHARDS)

    async def stored():
        row = await contact_row(db, api.tenant, pid)
        return row is not None and row["email"] == "live@example.com"

    await wait_until(stored, timeout=20, message="the contact from profile.identified")


# ---------------------------------------------------------------------------------------------- fill_contacts

@dataclass
class FakeIdentity(identity_pb2_grpc.IdentityServiceServicer):
    """Serves GetProfile from `profiles` (by tenant and id); counts calls."""

    profiles: dict[tuple[str, str], identity_pb2.Profile] = field(default_factory=dict)
    calls: int = 0

    async def GetProfile(self, request, context):
        self.calls += 1
        profile = self.profiles.get((tenant_id(context), request.profile_id))
        if profile is None:
            raise errors.NotFound("no such profile", code="profile_not_found")
        return identity_pb2.GetProfileResponse(profile=profile)


@pytest.fixture
async def identity():
    servicer = FakeIdentity()

    def register(server):
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)
        return ["mcloud.identity.v1.IdentityService"]

    service = GrpcService("identity", "127.0.0.1:0", register, grace=0.1)
    port = await service.start()
    channel = make_channel(f"127.0.0.1:{port}")
    try:
        yield servicer, identity_pb2_grpc.IdentityServiceStub(channel)
    finally:
        await channel.close()
        await service.stop()


@pytest.mark.without_jobs
async def test_fill_contacts_fetches_missing_and_partial_people_once(api, pool, feed, identity, db):
    fake, stub = identity
    known, partial, unknown = (str(uuid.uuid4()) for _ in range(3))
    fake.profiles[(api.tenant, known)] = identity_pb2.Profile(
        id=known, identifiers=[identity_pb2.Identifier(type="email", value="Known@Example.com"),
                               identity_pb2.Identifier(type="device_token", value="dev-1")],
        traits_json=orjson.dumps({"language": "fr", "time_zone": "Europe/Paris", "first_name": "Ann"}).decode(),
        consents=[identity_pb2.Consent(channel="sms", purpose="marketing", state=identity_pb2.CONSENT_STATE_DENIED),
                  identity_pb2.Consent(channel="email", purpose="analytics",
                                       state=identity_pb2.CONSENT_STATE_DENIED)])
    fake.profiles[(api.tenant, partial)] = identity_pb2.Profile(
        id=partial, identifiers=[identity_pb2.Identifier(type="phone", value="+33612345678")],
        consents=[identity_pb2.Consent(channel="email", purpose="marketing",
                                       state=identity_pb2.CONSENT_STATE_WITHDRAWN)])
    await feed(identified(api.tenant, partial, first_name="Pat"))

    async with pool.acquire() as conn:
        found = await contacts.fill_contacts(conn, stub, api.tenant, [known, partial, unknown])
        assert set(found) == {known, partial}
        k = found[known]
        assert (k.email, k.push_tokens, k.locale, k.timezone, dict(k.consent)) == (
            "Known@example.com", ("dev-1",), "fr", "Europe/Paris", {"sms": "denied"})
        assert k.traits["first_name"] == "Ann"
        p = found[partial]
        assert (p.phone, dict(p.consent), p.traits["first_name"]) == ("+33612345678", {"email": "withdrawn"}, "Pat")
        assert fake.calls == 3
        again = await contacts.fill_contacts(conn, stub, api.tenant, [known, partial])
        assert again == found and fake.calls == 3  # complete now: no more calls
