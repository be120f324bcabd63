"""Identity resolution through the real service: normalisation, blocked values, limits, priorities,
explicit audited merges, splits, history and lookups by old ids."""

from __future__ import annotations

import itertools

import grpc
import orjson
import pytest

from mcloud.events.v1 import event_pb2, identity_events_pb2
from mcloud.identity.v1 import identity_pb2 as pb
from mcloud_common.testing.services import wait_until


async def published(redis, tenant: str, type_: str, count: int) -> list[event_pb2.Event]:
    """The identity events of `type_` for `tenant` on the bus, once `count` of them are there."""
    found: list[event_pb2.Event] = []

    async def arrived() -> bool:
        found.clear()
        for shard in range(4):
            for _, fields in await redis.xrange(f"events.identity.{shard}"):
                ev = event_pb2.Event.FromString(fields[b"e"])
                if ev.type == type_ and ev.tenant_id == tenant:
                    found.append(ev)
        return len(found) >= count

    await wait_until(arrived, timeout=10)
    return found


async def not_found(api, identifier: str) -> bool:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.profile(identifier)
    return err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_emails_are_matched_case_and_whitespace_insensitively(api):
    r = await api.ingest(api.identify(user_id="u1", email="  Rachel@Example.COM "))
    p = await api.profile("email:rachel@example.com")
    assert p.id == r.profile_ids[0]
    assert ("email", "rachel@example.com") in {(i.type, i.value) for i in p.identifiers}
    assert (await api.profile("email:RACHEL@example.com ")).id == p.id  # lookups are normalised too


async def test_phones_become_e164_with_the_tenant_default_region(api):
    r = await api.ingest(api.identify(user_id="cn", phone="138 0013 8000"))  # default region CN
    assert (await api.profile("phone:+8613800138000")).id == r.profile_ids[0]
    settings = orjson.loads((await api.call("GetSettings", pb.GetSettingsRequest())).settings_json)
    settings["default_region"] = "US"
    await api.call("UpdateSettings", pb.UpdateSettingsRequest(settings_json=orjson.dumps(settings).decode()))
    r = await api.ingest(api.identify(user_id="us", phone="(650) 253-0000"))
    assert (await api.profile("phone:+16502530000")).id == r.profile_ids[0]
    # the same number written differently is the same person
    again = await api.ingest(api.identify(anonymous_id="dev-x", phone="+1 650 253 0000"))
    assert again.profile_ids[0] == r.profile_ids[0]


async def test_blocked_and_malformed_values_are_never_identifiers(api):
    r = await api.ingest(api.identify(anonymous_id="a-1", email="test@test.com", phone="000000"),
                         api.identify(anonymous_id="a-2", email="test@test.com"))
    assert r.profile_ids[0] != r.profile_ids[1]  # junk email did not glue the two visitors together
    assert await not_found(api, "email:test@test.com")
    p = await api.profile("anonymous_id:a-1")
    assert {i.type for i in p.identifiers} == {"anonymous_id"}


async def test_an_event_with_only_junk_identifiers_is_rejected_with_the_reason(api):
    r = await api.ingest(api.track(anonymous_id="undefined"), api.track(user_id="null"),
                         api.track(anonymous_id="ok-1"))
    assert r.accepted == 1
    assert [(x.index, x.code) for x in r.rejected] == [(0, "blocked_identifier"), (1, "blocked_identifier")]


async def test_tenant_blocked_patterns_and_custom_identifier_types(api):
    settings = {"identifiers": {"loyalty_card": {"priority": 9, "limit": 1, "normalise": "lower"},
                                "user_id": {"priority": 1, "limit": 1, "blocked": ["^guest-.*"]}}}
    await api.call("UpdateSettings", pb.UpdateSettingsRequest(settings_json=orjson.dumps(settings).decode()))
    r = await api.ingest(api.identify(anonymous_id="d1", loyalty_card="LC-77"),
                         api.identify(anonymous_id="d2", user_id="guest-123"))
    assert (await api.profile("loyalty_card:lc-77")).id == r.profile_ids[0]
    assert await not_found(api, "user_id:guest-123")


async def test_invalid_settings_are_refused_with_the_reason(api):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("UpdateSettings", pb.UpdateSettingsRequest(
            settings_json='{"identifiers": {"email": {"priority": 0, "limit": 1}}, "colour": "red"}'))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "identifiers.email.priority" in err.value.details() and "colour" in err.value.details()


async def test_a_second_email_beyond_the_limit_is_not_attached(api):
    first = await api.ingest(api.identify(user_id="u1", email="one@x.com"))
    await api.ingest(api.identify(user_id="u1", email="two@x.com"))
    assert (await api.profile("email:one@x.com")).id == first.profile_ids[0]
    assert await not_found(api, "email:two@x.com")


async def test_two_identified_people_are_not_merged_but_an_audited_merge_can_join_them(api, redis):
    a = (await api.ingest(api.identify(user_id="alice", anonymous_id="ph-1"),
                          api.track(anonymous_id="ph-1", product_id="shoe"))).profile_ids[0]
    b = (await api.ingest(api.identify(anonymous_id="lap-1", email="alice@work.com"))).profile_ids[0]
    # one event carrying both: no silent merge, the event goes to the higher-priority identifier
    r = await api.ingest(api.identify(user_id="alice", email="alice@work.com"))
    assert r.profile_ids[0] == a
    assert (await api.profile("email:alice@work.com")).id == b

    request = pb.MergeProfilesRequest(from_profile_id=b, into_profile_id=a, reason="same person, checked by support",
                                      actor="agent-7", idempotency_key="case-123")
    merged = (await api.call("MergeProfiles", request)).profile
    assert merged.id == a and b in merged.merged_from
    again = (await api.call("MergeProfiles", request)).profile  # retry: same answer, no second merge
    assert again.id == a
    assert (await api.profile("email:alice@work.com")).id == a
    assert (await api.profile(b)).id == a  # the old id still lands on the survivor
    history = (await api.call("ListMerges", pb.ListMergesRequest(profile_id=a))).merges
    manual = [m for m in history if m.actor == "agent-7"]
    assert len(manual) == 1 and manual[0].reason == "same person, checked by support"
    assert {(i.type, i.value) for i in manual[0].moved_identifiers} == {("email", "alice@work.com"),
                                                                        ("anonymous_id", "lap-1")}
    manual_events = []
    for ev in await published(redis, api.tenant, "profile.merged", 1):
        m = identity_events_pb2.ProfileMerged()
        ev.payload.Unpack(m)
        if m.reason == "manual":
            manual_events.append((m.from_profile_id, m.into_profile_id))
    assert manual_events == [(b, a)]


async def test_merging_a_profile_into_itself_is_a_failed_precondition(api):
    a = (await api.ingest(api.identify(user_id="solo"))).profile_ids[0]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("MergeProfiles", pb.MergeProfilesRequest(from_profile_id=a, into_profile_id=a))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_bad_merge_can_be_undone_and_each_person_gets_their_history_back(api, redis):
    anon = (await api.ingest(api.track(anonymous_id="shared-tab", product_id="lipstick"),
                             api.track(anonymous_id="shared-tab", product_id="lipstick"))).profile_ids[0]
    known = (await api.ingest(api.identify(user_id="dad", email="dad@x.com"),
                              api.track(user_id="dad", product_id="drill"))).profile_ids[0]
    # dad logs in on the shared tablet: the anonymous history folds into him (the bad merge)
    await api.ingest(api.identify(user_id="dad", anonymous_id="shared-tab"))
    assert (await api.profile("anonymous_id:shared-tab")).id == known
    events = await api.call("ListProfileEvents", pb.ListProfileEventsRequest(profile_id=known))
    assert sum(1 for e in events.events if "lipstick" in e.properties_json) == 2

    merges = (await api.call("ListMerges", pb.ListMergesRequest(profile_id=known))).merges
    bad = next(m for m in merges if m.from_profile_id == anon)
    split = await api.call("SplitProfile", pb.SplitProfileRequest(merge_id=bad.id, reason="shared tablet",
                                                                  actor="support", idempotency_key="undo-1"))
    assert split.original.id == known and split.split.id == anon
    assert (await api.profile("anonymous_id:shared-tab")).id == anon
    assert (await api.profile("user_id:dad")).id == known
    back = await api.call("ListProfileEvents", pb.ListProfileEventsRequest(profile_id=anon))
    assert sum(1 for e in back.events if "lipstick" in e.properties_json) == 2
    mine = await api.call("ListProfileEvents", pb.ListProfileEventsRequest(profile_id=known))
    assert not any("lipstick" in e.properties_json for e in mine.events)
    assert any("drill" in e.properties_json for e in mine.events)
    # retrying the same undo answers the same; a new undo of the same merge is refused
    again = await api.call("SplitProfile", pb.SplitProfileRequest(merge_id=bad.id, idempotency_key="undo-1"))
    assert again.split.id == anon
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("SplitProfile", pb.SplitProfileRequest(merge_id=bad.id, idempotency_key="undo-2"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    history = (await api.call("ListMerges", pb.ListMergesRequest(profile_id=known))).merges
    assert next(m for m in history if m.id == bad.id).HasField("undone_at")
    split_event = identity_events_pb2.ProfileSplit()
    (await published(redis, api.tenant, "profile.split", 1))[0].payload.Unpack(split_event)
    assert (split_event.profile_id, split_event.new_profile_id) == (known, anon)


async def test_identifiers_can_be_split_off_with_the_events_that_carried_them(api):
    p = (await api.ingest(api.identify(user_id="mum", anonymous_id="kid-phone"),
                          api.track(anonymous_id="kid-phone", product_id="game"),
                          api.track(user_id="mum", product_id="pan"))).profile_ids[0]
    split = await api.call("SplitProfile", pb.SplitProfileRequest(
        profile_id=p, identifiers=[pb.Identifier(type="anonymous_id", value="kid-phone")], reason="kid's phone"))
    kid = split.split.id
    assert (await api.profile("anonymous_id:kid-phone")).id == kid
    kid_events = await api.call("ListProfileEvents", pb.ListProfileEventsRequest(profile_id=kid))
    assert {orjson.loads(e.properties_json).get("product_id") for e in kid_events.events} == {"game"}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("SplitProfile", pb.SplitProfileRequest(
            profile_id=p, identifiers=[pb.Identifier(type="user_id", value="mum")]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # would leave nothing behind
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("SplitProfile", pb.SplitProfileRequest(
            profile_id=p, identifiers=[pb.Identifier(type="anonymous_id", value="nope")]))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_lookups_by_any_old_anonymous_id_land_on_the_merged_profile(api):
    await api.ingest(api.track(anonymous_id="old-1"), api.track(anonymous_id="old-2"))
    person = (await api.ingest(api.identify(user_id="p", anonymous_id="old-1"),
                               api.alias(previous_id="old-2", user_id="p"))).profile_ids[0]
    for old in ("anonymous_id:old-1", "anonymous_id:old-2", "user_id:p"):
        assert (await api.profile(old)).id == person


async def test_the_order_of_identify_and_alias_calls_does_not_change_the_graph(api_for):
    """The same calls, in several orders, each call its own batch, against the real database."""

    def calls(api):
        return [api.identify(user_id="r", email="r@x.com", anonymous_id="web-1"),
                api.track(anonymous_id="app-1"), api.alias(previous_id="app-1", user_id="r"),
                api.identify(user_id="s", anonymous_id="web-2"), api.track(anonymous_id="web-2"),
                api.identify(anonymous_id="tab-1", email="r@x.com")]

    graphs = []
    for order in list(itertools.permutations(range(6)))[::97][:6]:
        api = api_for()
        batch = calls(api)
        for i in order:
            await api.ingest(batch[i])
        graph = set()
        for ident in ("user_id:r", "user_id:s"):
            p = await api.profile(ident)
            graph.add(frozenset((i.type, i.value) for i in p.identifiers))
        graphs.append(graph)
    assert all(g == graphs[0] for g in graphs)
    assert frozenset({("user_id", "r"), ("email", "r@x.com"), ("anonymous_id", "web-1"), ("anonymous_id", "app-1"),
                      ("anonymous_id", "tab-1")}) in graphs[0]
