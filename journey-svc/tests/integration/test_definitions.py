"""Journey definitions through gRPC: drafts saved even when invalid with precise errors, publish
freezing immutable versions, pause / resume / archive, listing, tenancy."""

from __future__ import annotations

import uuid

import grpc
import orjson
import pytest

from mcloud.journey.v1 import journey_pb2 as pb

CART = {
    "entry": {"type": "event", "event": "Product Added", "key": "cart_id"},
    "reentry": {"mode": "after_exit"},
    "holdout_percent": 10,
    "goal": {"event": "Order Completed", "within": "P7D", "exit": True},
    "exit_criteria": [{"event": "message.unsubscribed"}],
    "start": "wait-1h",
    "steps": [
        {"id": "wait-1h", "type": "wait", "duration": "PT1H", "next": "bought"},
        {"id": "bought", "type": "wait_for_event", "event": "Order Completed", "match_key": "cart_id",
         "timeout": "P1D", "next": "done", "timeout_next": "remind"},
        {"id": "remind", "type": "send", "channel": "email", "template": "cart-reminder", "next": "done"},
        {"id": "done", "type": "exit"},
    ],
}


def text(value) -> str:
    return orjson.dumps(value).decode()


def code(err: grpc.aio.AioRpcError) -> str:
    return dict(err.trailing_metadata() or ()).get("mcloud-error-code", "")


async def save(api, definition, journey_id: str = "", name: str = "Cart recovery"):
    body = definition if isinstance(definition, str) else text(definition)
    return await api.call("SaveJourneyDraft", pb.SaveJourneyDraftRequest(journey_id=journey_id, name=name,
                                                                         definition_json=body))


async def test_draft_publish_versions_and_edits_of_a_live_journey(api):
    saved = await save(api, CART)
    assert saved.errors == [] and saved.journey.status == pb.JOURNEY_STATUS_DRAFT
    jid = saved.journey.id
    v1 = await api.call("PublishJourney", pb.PublishJourneyRequest(journey_id=jid, idempotency_key="p1"))
    assert v1.version == 1 and v1.journey.status == pb.JOURNEY_STATUS_ACTIVE
    assert not v1.journey.has_unpublished_changes
    again = await api.call("PublishJourney", pb.PublishJourneyRequest(journey_id=jid))  # unchanged draft
    assert again.version == 1

    edited = {**CART, "holdout_percent": 20}
    draft = await save(api, edited, jid)
    assert draft.journey.has_unpublished_changes and draft.journey.published_version == 1
    live = (await api.call("GetJourney", pb.GetJourneyRequest(journey_id=jid))).journey
    assert orjson.loads(live.definition_json)["holdout_percent"] == 10  # people keep running version 1
    v2 = await api.call("PublishJourney", pb.PublishJourneyRequest(journey_id=jid))
    assert v2.version == 2
    old = (await api.call("GetJourney", pb.GetJourneyRequest(journey_id=jid, version=1))).journey
    assert old.version == 1 and orjson.loads(old.definition_json)["holdout_percent"] == 10
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("GetJourney", pb.GetJourneyRequest(journey_id=jid, version=3))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_invalid_draft_is_saved_with_its_errors_and_cannot_be_published(api):
    broken = {**CART, "steps": [*CART["steps"][:2], {"id": "remind", "type": "send", "channel": "email",
                                                     "template": "cart-reminder", "next": "nowhere"}]}
    saved = await save(api, broken)
    assert saved.journey.id and saved.errors  # stored anyway, errors reported
    found = {(i.code, i.step_id) for i in saved.errors}
    assert ("dangling_edge", "remind") in found
    check = await api.call("ValidateJourney", pb.ValidateJourneyRequest(journey_id=saved.journey.id))
    assert not check.valid and {i.code for i in check.errors} >= {"dangling_edge"}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("PublishJourney", pb.PublishJourneyRequest(journey_id=saved.journey.id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and code(err.value) == "invalid_definition"
    junk = await api.call("ValidateJourney", pb.ValidateJourneyRequest(definition_json="{not json"))
    assert [i.code for i in junk.errors] == ["invalid_json"]


async def test_pause_resume_archive(api):
    jid = (await save(api, CART)).journey.id
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("PauseJourney", pb.PauseJourneyRequest(journey_id=jid))  # never published
    assert code(err.value) == "invalid_transition"
    await api.call("PublishJourney", pb.PublishJourneyRequest(journey_id=jid))
    paused = (await api.call("PauseJourney", pb.PauseJourneyRequest(journey_id=jid))).journey
    assert paused.status == pb.JOURNEY_STATUS_PAUSED
    assert (await api.call("PauseJourney", pb.PauseJourneyRequest(journey_id=jid))).journey.status == paused.status
    resumed = (await api.call("ResumeJourney", pb.ResumeJourneyRequest(journey_id=jid))).journey
    assert resumed.status == pb.JOURNEY_STATUS_ACTIVE
    archived = (await api.call("ArchiveJourney", pb.ArchiveJourneyRequest(journey_id=jid))).journey
    assert archived.status == pb.JOURNEY_STATUS_ARCHIVED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await save(api, CART, jid)
    assert code(err.value) == "journey_archived"


async def test_list_pages_newest_first_with_status_filter_and_tenancy(api, api_for, clock):
    ids = []
    for i in range(5):
        ids.append((await save(api, CART, name=f"J{i}")).journey.id)
        clock.advance(seconds=1)
    await api.call("PublishJourney", pb.PublishJourneyRequest(journey_id=ids[0]))
    seen, token = [], ""
    while True:
        page = await api.call("ListJourneys", pb.ListJourneysRequest(page_size=2, page_token=token))
        seen += [j.id for j in page.journeys]
        assert all(not j.draft_definition_json for j in page.journeys)
        token = page.next_page_token
        if not token:
            break
    assert seen == [ids[0], *reversed(ids[1:])]  # publishing touched J0 last
    active = await api.call("ListJourneys", pb.ListJourneysRequest(statuses=[pb.JOURNEY_STATUS_ACTIVE]))
    assert [j.id for j in active.journeys] == [ids[0]]
    other = api_for()
    assert (await other.call("ListJourneys", pb.ListJourneysRequest())).journeys == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await other.call("GetJourney", pb.GetJourneyRequest(journey_id=ids[0]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_input_is_invalid_argument(api):
    for request in (pb.SaveJourneyDraftRequest(name="", definition_json="{}"),
                    pb.SaveJourneyDraftRequest(journey_id="nope", name="x", definition_json="{}")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.call("SaveJourneyDraft", request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("GetJourney", pb.GetJourneyRequest(journey_id=str(uuid.uuid4())))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
