"""Export and erasure of a person (the whole merge family) through the real gRPC server, PostgreSQL and
Valkey; erased identifiers are refused on re-ingest."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import orjson
import pytest

from identity.repo import privacy as privacy_repo
from mcloud.events.v1 import event_pb2, identity_events_pb2
from mcloud.identity.v1 import identity_pb2 as pb
from mcloud_common.bus import shard_of
from mcloud_common.testing.services import wait_until

# The real service without background jobs (this area needs none; the relay still runs).
pytestmark = pytest.mark.without_jobs


def error_code(err: pytest.ExceptionInfo) -> str:
    return dict(err.value.trailing_metadata())["mcloud-error-code"]


async def rachel(api, db) -> tuple[str, str]:
    """Rachel: known on her laptop, then browsing anonymously on her phone, then signing in there (the
    phone's profile merges into hers); consent, tags and a segment membership. (survivor, merged id)"""
    known = await api.ingest(api.identify(user_id="rachel", anonymous_id="laptop", email="Rachel@Example.com",
                                          name="Rachel"))
    survivor = known.profile_ids[0]
    phone = await api.ingest(api.track("Product Viewed", anonymous_id="phone", sku="shoe-1"),
                             api.track("Product Viewed", anonymous_id="phone", sku="shoe-2"))
    merged = phone.profile_ids[0]
    assert merged != survivor
    await api.ingest(api.identify(user_id="rachel", anonymous_id="phone"),
                     api.track("Order Completed", user_id="rachel", revenue=39.9))
    assert (await api.profile(merged)).id == survivor
    await api.call("SetConsent", pb.SetConsentRequest(profile_id=survivor, channel="email", purpose="marketing",
                                                      state=pb.CONSENT_STATE_GRANTED, source="web"))
    await api.call("UpdateProfile", pb.UpdateProfileRequest(profile_id=survivor, add_tags=["vip"]))
    segment = uuid.uuid4()
    await db.execute("INSERT INTO segments (id, tenant_id, name, rules, member_count) VALUES ($1, $2, 'VIPs', '{}', 2)",
                     segment, api.tenant)
    await db.execute("INSERT INTO segment_members (tenant_id, segment_id, profile_id) VALUES ($1, $2, $3)",
                     api.tenant, segment, survivor)
    return survivor, merged


async def test_export_holds_everything_about_the_person_across_merges(api, db):
    survivor, merged = await rachel(api, db)
    for asked in (survivor, merged):  # any id of the family exports the person
        got = await api.call("ExportProfile", pb.ExportProfileRequest(profile_id=asked))
        doc = orjson.loads(got.export_json)
        assert doc["profile_id"] == survivor
        assert doc["profile"]["traits"]["name"] == "Rachel"
        assert doc["profile"]["tags"] == ["vip"]
        assert "name" in doc["profile"]["traits_meta"]  # provenance of each trait
        assert [p["id"] for p in doc["merged_profiles"]] == [merged]
        assert {(i["type"], i["value"]) for i in doc["identifiers"]} == {
            ("user_id", "rachel"), ("anonymous_id", "laptop"), ("anonymous_id", "phone"),
            ("email", "rachel@example.com")}
        assert [(c["channel"], c["state"]) for c in doc["consents"]] == [("email", "granted")]
        assert [c["state"] for c in doc["consent_log"]] == ["granted"]
        assert [s["name"] for s in doc["segments"]] == ["VIPs"]
        assert [(m["from_profile_id"], m["into_profile_id"]) for m in doc["merges"]] == [(merged, survivor)]
        assert doc["event_count"] == 5 and not doc["events_truncated"]
        assert sorted(e["name"] or e["type"] for e in doc["events"]) == [
            "Order Completed", "Product Viewed", "Product Viewed", "identify", "identify"]
        assert {e["properties"].get("sku") for e in doc["events"]} == {None, "shoe-1", "shoe-2"}


async def test_a_large_history_is_exported_newest_first_up_to_the_cap_with_a_note(api, monkeypatch):
    monkeypatch.setattr(privacy_repo, "EXPORT_MAX_EVENTS", 5)
    monkeypatch.setattr(privacy_repo, "_EVENT_PAGE", 2)  # several pages
    r = await api.ingest(*(api.track("Page Scrolled", user_id="u-7", n=i) for i in range(8)))
    got = await api.call("ExportProfile", pb.ExportProfileRequest(profile_id=r.profile_ids[0]))
    doc = orjson.loads(got.export_json)
    assert doc["event_count"] == 8 and doc["events_truncated"] is True
    assert len(doc["events"]) == 5 and len({e["id"] for e in doc["events"]}) == 5
    times = [e["timestamp"] for e in doc["events"]]
    assert times == sorted(times, reverse=True)
    assert "ListProfileEvents" in doc["note"]


async def published(redis, profile_id: str, type_: str) -> list[event_pb2.Event]:
    entries = await redis.xrange(f"events.identity.{shard_of(profile_id, 4)}")
    events = [event_pb2.Event.FromString(fields[b"e"]) for _, fields in entries]
    return [e for e in events if e.profile_id == profile_id and e.type == type_]


async def test_erase_deletes_the_person_keeps_a_tombstone_and_tells_every_service(api, db, redis):
    survivor, merged = await rachel(api, db)
    family = [survivor, merged]
    # asking with the merged-away id erases the whole person
    assert (await api.call("EraseProfile", pb.EraseProfileRequest(profile_id=merged, idempotency_key="k1"))).erased

    for table in ("identifiers", "events", "consents", "consent_log", "segment_members", "dirty_profiles"):
        left = await db.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1 AND profile_id = ANY($2::uuid[])",
                                 api.tenant, family)
        assert left == 0, table
    rows = await db.fetch("SELECT traits::text, traits_meta::text, computed::text, tags, erased_at IS NOT NULL "
                          "FROM profiles WHERE tenant_id = $1 AND id = ANY($2::uuid[])", api.tenant, family)
    assert [tuple(r) for r in rows] == [("{}", "{}", "{}", [], True)] * 2  # blank tombstones
    assert await db.fetchval("SELECT member_count FROM segments WHERE tenant_id = $1", api.tenant) == 1
    assert await db.fetchval("SELECT moved_identifiers::text FROM merges WHERE tenant_id = $1", api.tenant) == "[]"
    digests = {r["digest"] for r in await db.fetch("SELECT digest FROM erased_identifiers WHERE tenant_id = $1",
                                                    api.tenant)}
    assert digests == {privacy_repo.identifier_digest(api.tenant, k) for k in [
        ("user_id", "rachel"), ("anonymous_id", "laptop"), ("anonymous_id", "phone"), ("email", "rachel@example.com")]}

    for profile in family:
        [event] = await wait_until(lambda p=profile: published(redis, p, "profile.erased"),
                                   message=f"profile.erased for {profile}")
        payload = identity_events_pb2.ProfileErased()
        assert event.payload.Unpack(payload)
        assert payload.profile_id == profile and payload.requested_at.seconds > 0

    # the tombstone: lookups by id or identifier say the person was erased
    for request in (pb.GetProfileRequest(profile_id=survivor), pb.GetProfileRequest(profile_id=merged),
                    pb.GetProfileRequest(identifier=pb.Identifier(type="email", value="RACHEL@example.com"))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.stub.GetProfile(request, metadata=api.md)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and error_code(err) == "profile_erased"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("ExportProfile", pb.ExportProfileRequest(profile_id=survivor))
    assert error_code(err) == "profile_erased"


async def test_erase_is_idempotent_and_publishes_once(api, db, redis):
    survivor, merged = await rachel(api, db)
    for key in ("k1", "k1", "k2", ""):
        got = await api.call("EraseProfile", pb.EraseProfileRequest(profile_id=survivor, idempotency_key=key))
        assert got.erased

    async def relayed() -> bool:  # the relay deletes what it published: nothing left means all is on the stream
        return not await db.fetchval("SELECT count(*) FROM outbox WHERE tenant_id = $1", str(api.tenant))

    await wait_until(relayed, message="outbox relayed")
    assert len(await published(redis, survivor, "profile.erased")) == 1
    assert len(await published(redis, merged, "profile.erased")) == 1


async def test_erased_identifiers_are_refused_on_reingest(api, db):
    survivor, _ = await rachel(api, db)
    await api.call("EraseProfile", pb.EraseProfileRequest(profile_id=survivor))
    r = await api.ingest(api.track("Product Viewed", user_id="rachel"),
                         api.identify(user_id="someone-new", email="rachel@example.com"),
                         api.track("Product Viewed", anonymous_id="laptop"),
                         api.track("Product Viewed", user_id="someone-else"))
    assert r.accepted == 1
    assert [(x.index, x.code) for x in r.rejected] == [(0, "erased_identifier"), (1, "erased_identifier"),
                                                        (2, "erased_identifier")]
    assert await db.fetchval("SELECT count(*) FROM identifiers WHERE tenant_id = $1 AND value = 'rachel'",
                             api.tenant) == 0


async def test_erase_and_export_refuse_unknown_and_malformed_ids(api):
    for method, request in (("EraseProfile", pb.EraseProfileRequest(profile_id=str(uuid.uuid4()))),
                            ("ExportProfile", pb.ExportProfileRequest(profile_id=str(uuid.uuid4())))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.call(method, request)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and error_code(err) == "profile_not_found"
    for method, request in (("EraseProfile", pb.EraseProfileRequest(profile_id="rachel")),
                            ("ExportProfile", pb.ExportProfileRequest(profile_id=""))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.call(method, request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_code(err) == "invalid_profile_id"


async def test_erase_is_per_tenant(api, api_for, db):
    survivor, _ = await rachel(api, db)
    other = api_for()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await other.call("EraseProfile", pb.EraseProfileRequest(profile_id=survivor))
    assert error_code(err) == "profile_not_found"
    assert (await api.profile(survivor)).id == survivor
    r = await other.ingest(other.track("Product Viewed", user_id="rachel"))
    assert r.accepted == 1



async def _track_while_erasing(api, profile: str, erase_after: int) -> None:
    """Batches of events for the person, and an erase that starts once `erase_after` batches are in."""
    started = asyncio.Event()

    async def keep_tracking() -> None:
        for n in range(15):
            if n == erase_after:
                started.set()
            await api.ingest(*(api.track("Product Viewed", user_id="rachel") for _ in range(20)))

    async def erase() -> None:
        await started.wait()
        await api.call("EraseProfile", pb.EraseProfileRequest(profile_id=profile))

    await asyncio.gather(keep_tracking(), erase())


async def test_a_batch_in_flight_during_an_erase_does_not_land_on_the_erased_person(api_for, db):
    leftovers = []
    for erase_after in range(1, 6):
        api = api_for()
        profile = (await api.ingest(api.identify(user_id="rachel", email="r@example.com"))).profile_ids[0]
        await _track_while_erasing(api, profile, erase_after)
        left = await db.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1", api.tenant)
        left += await db.fetchval("SELECT count(*) FROM identifiers WHERE tenant_id = $1", api.tenant)
        leftovers.append(left)
    assert leftovers == [0] * 5
