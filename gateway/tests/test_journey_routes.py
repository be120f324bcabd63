"""The journey routes over HTTP against a REAL journey service (in-process gRPC on a free port, its own
migrated database, real Valkey, a ManualClock, no executor): drafts saved even when invalid, validation,
publish into versions, pause / resume / archive, enrollments and their outcomes, lists by journey and by
profile, stats, test runs and dry runs, scopes, problems and tenancy. Every test makes its own tenant, so
they share one journey service."""

from __future__ import annotations

import uuid
from datetime import datetime

import grpc
import httpx
import orjson
import pytest

from gateway.testing import PROBLEM, assert_problem, bearer, scoped_key
from mcloud.identity.v1 import identity_pb2
from mcloud.journey.v1 import journey_pb2, journey_pb2_grpc
from mcloud_common.grpc_client import tenant_metadata

# entered through the API, waits a day before its first message (so enrollments stay active: no executor runs)
REPLENISH = {
    "entry": {"type": "api"},
    "goal": {"event": "Order Completed", "within": "P7D"},
    "exit_criteria": [{"event": "message.unsubscribed"}],
    "start": "wait-1d",
    "steps": [
        {"id": "wait-1d", "type": "wait", "duration": "P1D", "next": "remind"},
        {"id": "remind", "type": "send", "channel": "email", "template": "replenish", "next": "done"},
        {"id": "done", "type": "exit"},
    ],
}
# two errors: a bad duration and a next naming no step
BROKEN = {
    **REPLENISH,
    "steps": [
        {"id": "wait-1d", "type": "wait", "duration": "one day", "next": "remind"},
        {"id": "remind", "type": "send", "channel": "email", "template": "replenish", "next": "nowhere"},
    ],
}
# waits an hour, then a day for Checkout Started: reminds when it does not come
CART = {
    "entry": {"type": "event", "event": "Product Added", "key": "cart_id"},
    "start": "wait-1h",
    "steps": [
        {"id": "wait-1h", "type": "wait", "duration": "PT1H", "next": "bought"},
        {"id": "bought", "type": "wait_for_event", "event": "Checkout Started", "timeout": "P1D", "next": "done",
         "timeout_next": "remind"},
        {"id": "remind", "type": "send", "channel": "email", "template": "cart", "next": "done"},
        {"id": "done", "type": "exit"},
    ],
}
NOT_ESTIMATED = {"estimated_entrants": 0, "estimated_holdout": 0, "total_profiles": 0,
                 "basis": "api entries cannot be estimated from past events"}





def new_profile() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def client(journey_client) -> httpx.AsyncClient:
    return journey_client


@pytest.fixture
async def tenant(make_tenant):
    return await make_tenant()


@pytest.fixture
def admin(tenant) -> dict[str, str]:
    return bearer(tenant.secret_key)


async def create(client, headers, definition=None, name: str = "Replenish") -> dict:
    r = await client.post("/v1/journeys", headers=headers,
                          json={"name": name, "definition": REPLENISH if definition is None else definition})
    assert r.status_code == 201, r.text
    return r.json()


async def live(client, headers, definition=None) -> str:
    """A new published (active) journey: its id."""
    jid = (await create(client, headers, definition))["journey"]["id"]
    r = await client.post(f"/v1/journeys/{jid}/publish", headers=headers)
    assert r.status_code == 200, r.text
    return jid


async def enrol(client, headers, jid: str, profile: str, **body) -> httpx.Response:
    return await client.post(f"/v1/journeys/{jid}/enrollments", headers=headers, json={"profile_id": profile, **body})


# ---- journeys ------------------------------------------------------------------------------------


async def test_create_replace_list_and_read_with_a_retried_create_making_one(client, tenant, db, journey_clock):
    writer = await scoped_key(db, tenant, "journeys:write")
    reader = await scoped_key(db, tenant, "journeys:read")

    first = await client.post("/v1/journeys", headers={**writer, "Idempotency-Key": "j-1"},
                              json={"name": "Replenish", "description": "every 30 days", "definition": REPLENISH})
    retry = await client.post("/v1/journeys", headers={**writer, "Idempotency-Key": "j-1"},
                              json={"name": "Replenish", "description": "every 30 days", "definition": REPLENISH})

    assert first.status_code == 201, first.text
    saved = first.json()
    journey = saved["journey"]
    assert saved["errors"] == []
    assert first.headers["location"] == f"/v1/journeys/{journey['id']}"
    assert retry.status_code == 201 and retry.json()["journey"]["id"] == journey["id"]
    assert (journey["name"], journey["description"], journey["status"]) == ("Replenish", "every 30 days", "draft")
    assert journey["draft"] == REPLENISH  # a JSON object, not text
    assert (journey["definition"], journey["version"], journey["published_version"]) == (None, None, 0)
    assert journey["draft_text"] is None and journey["has_unpublished_changes"] is True
    assert datetime.fromisoformat(journey["created_at"]) == journey_clock.now() and journey["published_at"] is None

    edited = {**REPLENISH, "steps": [{**REPLENISH["steps"][0], "duration": "P2D"}, *REPLENISH["steps"][1:]]}
    replaced = await client.put(f"/v1/journeys/{journey['id']}", headers=writer,
                                json={"name": "Replenish v2", "definition": edited})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["errors"] == []
    assert replaced.json()["journey"]["name"] == "Replenish v2"
    assert replaced.json()["journey"]["description"] == ""  # a PUT replaces everything
    other = await create(client, writer, name="Welcome")

    listed = await client.get("/v1/journeys", headers=reader)
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert {j["id"] for j in page["journeys"]} == {journey["id"], other["journey"]["id"]}  # the retry made none
    assert page["next_cursor"] is None
    assert "draft" not in page["journeys"][0] and "definition" not in page["journeys"][0]
    one = await client.get("/v1/journeys", headers=reader, params={"limit": 1})
    rest = await client.get("/v1/journeys", headers=reader, params={"limit": 1, "cursor": one.json()["next_cursor"]})
    assert len(one.json()["journeys"]) == 1 and one.json()["next_cursor"]
    assert {j["id"] for j in one.json()["journeys"] + rest.json()["journeys"]} == {j["id"] for j in page["journeys"]}
    assert rest.json()["next_cursor"] is None

    got = await client.get(f"/v1/journeys/{journey['id']}", headers=reader)
    assert got.status_code == 200, got.text
    assert got.json()["draft"] == edited and got.json()["name"] == "Replenish v2"


async def test_an_invalid_draft_is_saved_with_its_errors_and_publishing_it_is_a_409(client, admin):
    saved = await client.post("/v1/journeys", headers=admin, json={"name": "Broken", "definition": BROKEN})

    assert saved.status_code == 201, saved.text
    body = saved.json()
    jid = body["journey"]["id"]
    assert body["journey"]["draft"] == BROKEN  # stored anyway
    assert {(e["code"], e["step_id"], e["path"]) for e in body["errors"]} == {
        ("invalid_duration", "wait-1d", "/steps/0/duration"), ("dangling_edge", "remind", "/steps/1/next")}
    assert all(e["message"] for e in body["errors"])

    check = await client.post(f"/v1/journeys/{jid}/validate", headers=admin)
    assert check.status_code == 200, check.text
    assert check.json()["valid"] is False
    assert {e["code"] for e in check.json()["errors"]} == {"invalid_duration", "dangling_edge"}

    refused = await client.post(f"/v1/journeys/{jid}/publish", headers=admin)
    problem = assert_problem(refused, 409, "invalid_definition")
    assert {(e["code"], e["path"]) for e in problem["definition_errors"]} == {
        ("invalid_duration", "/steps/0/duration"), ("dangling_edge", "/steps/1/next")}
    still = (await client.get(f"/v1/journeys/{jid}", headers=admin)).json()
    assert (still["status"], still["published_version"]) == ("draft", 0)

    fixed = await client.put(f"/v1/journeys/{jid}", headers=admin, json={"name": "Fixed", "definition": REPLENISH})
    assert fixed.json()["errors"] == []
    assert (await client.post(f"/v1/journeys/{jid}/publish", headers=admin)).status_code == 200


async def test_validate_inline_reports_errors_and_warnings_and_saves_nothing(client, tenant, db):
    reader = await scoped_key(db, tenant, "journeys:read")
    no_goal = {k: v for k, v in REPLENISH.items() if k not in ("goal", "exit_criteria")}

    good = await client.post("/v1/journeys/validate", headers=reader, json={"definition": REPLENISH})
    warned = await client.post("/v1/journeys/validate", headers=reader, json={"definition": no_goal})
    bad = await client.post("/v1/journeys/validate", headers=reader, json={"definition": BROKEN})
    empty = await client.post("/v1/journeys/validate", headers=reader, json={"definition": {}})

    assert good.status_code == 200, good.text
    assert good.json() == {"valid": True, "errors": [], "warnings": []}
    assert warned.json()["valid"] is True and warned.json()["errors"] == []
    assert {(w["code"], w["path"]) for w in warned.json()["warnings"]} == {
        ("no_goal", "/goal"), ("no_unsubscribe_exit", "/exit_criteria")}
    assert [w["step_id"] for w in warned.json()["warnings"] if w["code"] == "no_goal"] == [None]
    assert bad.json()["valid"] is False and len(bad.json()["errors"]) == 2
    assert empty.json()["valid"] is False and "missing_entry" in {e["code"] for e in empty.json()["errors"]}
    assert (await client.get("/v1/journeys", headers=reader)).json()["journeys"] == []


async def test_publish_versions_and_reading_an_older_one(client, admin):
    jid = (await create(client, admin))["journey"]["id"]

    v1 = await client.post(f"/v1/journeys/{jid}/publish", headers={**admin, "Idempotency-Key": "pub-1"})
    v1_retry = await client.post(f"/v1/journeys/{jid}/publish", headers={**admin, "Idempotency-Key": "pub-1"})

    assert v1.status_code == 200, v1.text
    assert v1.json()["version"] == 1 and v1_retry.json() == v1.json()
    journey = v1.json()["journey"]
    assert (journey["status"], journey["published_version"], journey["version"]) == ("active", 1, 1)
    assert journey["definition"] == REPLENISH and journey["has_unpublished_changes"] is False
    assert journey["published_at"]

    edited = {**REPLENISH, "holdout_percent": 20}
    await client.put(f"/v1/journeys/{jid}", headers=admin, json={"name": "Replenish", "definition": edited})
    pending = (await client.get(f"/v1/journeys/{jid}", headers=admin)).json()
    assert pending["has_unpublished_changes"] is True
    assert pending["definition"] == REPLENISH and pending["draft"] == edited  # people keep running version 1
    v2 = await client.post(f"/v1/journeys/{jid}/publish", headers=admin)
    assert v2.json()["version"] == 2 and v2.json()["journey"]["definition"] == edited
    old = await client.get(f"/v1/journeys/{jid}", headers=admin, params={"version": 1})
    assert old.status_code == 200, old.text
    assert (old.json()["version"], old.json()["definition"]) == (1, REPLENISH)
    assert_problem(await client.get(f"/v1/journeys/{jid}", headers=admin, params={"version": 9}), 404,
                   "version_not_found")


async def test_a_draft_that_is_not_json_is_returned_as_draft_text(client, tenant, journey_port):
    # only a gRPC caller can store such text: the HTTP API takes definitions as JSON objects
    async with grpc.aio.insecure_channel(f"127.0.0.1:{journey_port}") as channel:
        stub = journey_pb2_grpc.JourneyServiceStub(channel)
        saved = await stub.SaveJourneyDraft(
            journey_pb2.SaveJourneyDraftRequest(name="Raw", definition_json="{not json"),
            metadata=tenant_metadata(tenant.tenant_id))

    got = await client.get(f"/v1/journeys/{saved.journey.id}", headers=bearer(tenant.secret_key))
    check = await client.post(f"/v1/journeys/{saved.journey.id}/validate", headers=bearer(tenant.secret_key))

    assert got.status_code == 200, got.text
    assert (got.json()["draft"], got.json()["draft_text"]) == (None, "{not json")
    assert [e["code"] for e in check.json()["errors"]] == ["invalid_json"]


async def test_pause_resume_archive_and_invalid_transitions(client, admin):
    draft = (await create(client, admin))["journey"]["id"]
    assert_problem(await client.post(f"/v1/journeys/{draft}/pause", headers=admin), 409, "invalid_transition")
    jid = await live(client, admin)

    paused = await client.post(f"/v1/journeys/{jid}/pause", headers=admin)
    paused_again = await client.post(f"/v1/journeys/{jid}/pause", headers=admin)
    blocked = await enrol(client, admin, jid, new_profile())
    resumed = await client.post(f"/v1/journeys/{jid}/resume", headers=admin)
    archived = await client.post(f"/v1/journeys/{jid}/archive", headers=admin)
    archived_again = await client.post(f"/v1/journeys/{jid}/archive", headers=admin)

    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused" and paused_again.json()["status"] == "paused"  # a no-op
    assert_problem(blocked, 409, "journey_not_active")
    assert resumed.json()["status"] == "active"
    assert archived.json()["status"] == "archived" and archived_again.status_code == 200
    assert_problem(await client.post(f"/v1/journeys/{jid}/pause", headers=admin), 409, "invalid_transition")
    assert_problem(await client.post(f"/v1/journeys/{jid}/resume", headers=admin), 409, "invalid_transition")
    assert_problem(await client.put(f"/v1/journeys/{jid}", headers=admin,
                                    json={"name": "x", "definition": REPLENISH}), 409, "journey_archived")
    assert_problem(await client.post(f"/v1/journeys/{jid}/publish", headers=admin), 409, "journey_archived")
    assert_problem(await enrol(client, admin, jid, new_profile()), 409, "journey_not_active")

    listed = await client.get("/v1/journeys", headers=admin, params=[("status", "archived"), ("status", "draft")])
    assert {j["id"]: j["status"] for j in listed.json()["journeys"]} == {jid: "archived", draft: "draft"}
    active = await client.get("/v1/journeys", headers=admin, params={"status": "active"})
    assert active.json()["journeys"] == []


# ---- enrollments ---------------------------------------------------------------------------------


async def test_enrol_outcomes_enrolled_duplicate_and_reentry_blocked(client, tenant, db, journey_clock):
    writer = await scoped_key(db, tenant, "journeys:write", "journeys:read")
    jid = await live(client, writer)
    rachel = new_profile()

    first = await enrol(client, {**writer, "Idempotency-Key": "e-1"}, jid, rachel, context={"sku": "pegasus-40"})
    same_key = await enrol(client, {**writer, "Idempotency-Key": "e-1"}, jid, rachel, context={"sku": "pegasus-40"})
    again = await enrol(client, writer, jid, rachel)  # re-entry rule "never" (the default)
    by_order = await enrol(client, writer, jid, rachel, entry_key="order-1")
    by_order_again = await enrol(client, writer, jid, rachel, entry_key="order-1")

    assert first.status_code == 201, first.text
    result = first.json()
    assert result["outcome"] == "enrolled"
    enrollment = result["enrollment"]
    assert first.headers["location"] == f"/v1/enrollments/{enrollment['id']}"
    assert (enrollment["journey_id"], enrollment["journey_version"], enrollment["profile_id"]) == (jid, 1, rachel)
    assert (enrollment["status"], enrollment["trigger"], enrollment["current_step_id"]) == ("active", "api", "wait-1d")
    assert enrollment["context"] == {"sku": "pegasus-40"} and enrollment["entry_key"] == ""
    assert enrollment["holdout"] is False and enrollment["converted"] is False
    assert enrollment["exit_reason"] is None and enrollment["ended_at"] is None
    assert datetime.fromisoformat(enrollment["entered_at"]) == journey_clock.now()

    assert same_key.status_code == 200, same_key.text
    assert same_key.json() == {"outcome": "duplicate", "enrollment": enrollment}
    assert again.status_code == 200, again.text
    assert again.json()["outcome"] == "reentry_blocked" and again.json()["enrollment"]["id"] == enrollment["id"]
    assert by_order.status_code == 201 and by_order.json()["outcome"] == "enrolled"
    assert by_order.json()["enrollment"]["entry_key"] == "order-1"
    assert by_order_again.status_code == 200
    assert by_order_again.json()["outcome"] == "duplicate"
    assert by_order_again.json()["enrollment"]["id"] == by_order.json()["enrollment"]["id"]

    got = await client.get(f"/v1/enrollments/{enrollment['id']}", headers=writer)
    assert got.status_code == 200, got.text
    detail = got.json()
    trace = detail.pop("trace")
    assert detail == enrollment
    assert [(t["step_id"], t["step_type"], t["outcome"]) for t in trace] == [("wait-1d", "entry", "entered")]
    assert datetime.fromisoformat(trace[0]["at"]) == journey_clock.now()


async def test_enrollments_by_journey_and_by_profile_page_newest_first(client, admin, journey_clock):
    jid = await live(client, admin)
    other = await live(client, admin)
    people = [new_profile() for _ in range(3)]
    ids = []
    for person in people:
        ids.append((await enrol(client, admin, jid, person)).json()["enrollment"]["id"])
        journey_clock.advance(seconds=1)
    in_other = (await enrol(client, admin, other, people[0])).json()["enrollment"]["id"]

    page = await client.get(f"/v1/journeys/{jid}/enrollments", headers=admin, params={"limit": 2})
    assert page.status_code == 200, page.text
    rest = await client.get(f"/v1/journeys/{jid}/enrollments", headers=admin,
                            params={"limit": 2, "cursor": page.json()["next_cursor"]})
    assert [e["id"] for e in page.json()["enrollments"] + rest.json()["enrollments"]] == list(reversed(ids))
    assert rest.json()["next_cursor"] is None
    active = await client.get(f"/v1/journeys/{jid}/enrollments", headers=admin, params={"status": "active"})
    exited = await client.get(f"/v1/journeys/{jid}/enrollments", headers=admin, params={"status": "exited"})
    assert len(active.json()["enrollments"]) == 3 and exited.json()["enrollments"] == []

    by_profile = await client.get(f"/v1/profiles/{people[0]}/enrollments", headers=admin)
    assert by_profile.status_code == 200, by_profile.text
    assert [e["id"] for e in by_profile.json()["enrollments"]] == [in_other, ids[0]]
    assert (await client.get(f"/v1/profiles/{new_profile()}/enrollments", headers=admin)).json() == {
        "enrollments": [], "next_cursor": None}


async def test_profiles_by_type_value_go_through_identity(gateway, journey_port, fake_identity, make_tenant):
    identity, _ = fake_identity
    tenant = await make_tenant()
    admin = bearer(tenant.secret_key)
    rachel = new_profile()
    identity.profiles[(tenant.tenant_id, rachel)] = identity_pb2.Profile(
        id=rachel, identifiers=[identity_pb2.Identifier(type="user_id", value="42")])

    async with gateway(journey_target=f"127.0.0.1:{journey_port}") as client:
        jid = await live(client, admin)
        enrolled = await enrol(client, admin, jid, "user_id:42")
        listed = await client.get("/v1/profiles/user_id:42/enrollments", headers=admin)
        nobody = await enrol(client, admin, jid, "user_id:99")
        nobody_list = await client.get("/v1/profiles/user_id:99/enrollments", headers=admin)
        not_an_identifier = await client.get("/v1/profiles/rachel/enrollments", headers=admin)
        tested = await client.post("/v1/journeys/test", headers=admin,
                                   json={"definition": CART, "profile_id": "user_id:42"})
        tested_nobody = await client.post(f"/v1/journeys/{jid}/test", headers=admin, json={"profile_id": "user_id:99"})

    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json()["enrollment"]["profile_id"] == rachel
    assert [e["profile_id"] for e in listed.json()["enrollments"]] == [rachel]
    assert_problem(nobody, 404, "profile_not_found")
    assert_problem(nobody_list, 404, "profile_not_found")
    assert_problem(not_an_identifier, 400, "invalid_identifier")
    assert tested.status_code == 200, tested.text
    assert tested.json()["status"] == "completed"
    assert_problem(tested_nobody, 404, "profile_not_found")


async def test_stats_count_treated_holdout_and_steps(client, admin):
    jid = await live(client, admin, {**REPLENISH, "holdout_percent": 50})
    for _ in range(20):
        assert (await enrol(client, admin, jid, new_profile())).status_code == 201

    r = await client.get(f"/v1/journeys/{jid}/stats", headers=admin)

    assert r.status_code == 200, r.text
    stats = r.json()
    assert (stats["journey_id"], stats["version"]) == (jid, None)
    assert stats["entered"] + stats["holdout"]["entered"] == 20
    assert 0 < stats["holdout"]["entered"] < 20  # a 50 % holdout of 20 people
    assert (stats["active"], stats["completed"], stats["exited"], stats["converted"]) == (stats["entered"], 0, 0, 0)
    assert stats["conversion_rate"] == 0.0 and stats["uplift"] == 0.0
    assert stats["holdout"]["converted"] == 0 and stats["holdout"]["conversion_rate"] == 0.0
    # per-step counts come from the executor's step log (no executor runs here): only their shape is checked
    assert isinstance(stats["steps"], list)
    for step in stats["steps"]:
        assert set(step) == {"step_id", "step_type", "name", "entered", "completed", "active", "failed", "outcomes"}

    v1 = (await client.get(f"/v1/journeys/{jid}/stats", headers=admin, params={"version": 1})).json()
    assert v1["version"] == 1 and v1["entered"] == stats["entered"]
    later = await client.get(f"/v1/journeys/{jid}/stats", headers=admin,
                             params={"entered_from": "2027-01-01T00:00:00Z"})
    assert later.json()["entered"] == 0 and later.json()["holdout"]["entered"] == 0 and later.json()["steps"] == []
    window = await client.get(f"/v1/journeys/{jid}/stats", headers=admin,
                              params={"entered_from": "2027-01-01T00:00:00Z", "entered_to": "2026-01-01T00:00:00Z"})
    assert_problem(window, 400, "invalid_request")
    naive = await client.get(f"/v1/journeys/{jid}/stats", headers=admin, params={"entered_from": "2027-01-01T00:00"})
    assert_problem(naive, 400, "invalid_request")


# ---- test runs and dry runs ----------------------------------------------------------------------


def steps(result: dict) -> list[tuple[str, str, str]]:
    return [(t["step_id"], t["step_type"], t["outcome"]) for t in result["trace"]]


async def test_a_test_run_fast_forwards_waits_and_lists_effects_without_the_awaited_event(client, tenant, db):
    reader = await scoped_key(db, tenant, "journeys:read")
    profile = new_profile()

    lazy = await client.post("/v1/journeys/test", headers=reader,
                             json={"definition": CART, "profile_id": profile, "context": {"cart_id": "c-1"}})
    keen = await client.post("/v1/journeys/test", headers=reader,
                             json={"definition": CART, "profile_id": profile, "events": ["Checkout Started"]})

    assert lazy.status_code == 200, lazy.text
    body = lazy.json()
    assert (body["status"], body["exit_reason"], body["errors"]) == ("completed", None, [])
    assert body["waited_seconds"] == 3600 + 86400
    assert [(step, outcome) for step, _, outcome in steps(body)] == [
        ("wait-1h", "next"), ("bought", "timeout"), ("remind", "done"), ("done", "exit")]
    assert [kind for _, kind, _ in steps(body)][:2] == ["wait", "wait_for_event"]
    assert [(e["step_id"], e["kind"]) for e in body["effects"]] == [("remind", "send")]
    assert body["effects"][0]["spec"]["template"] == "cart" and body["effects"][0]["spec"]["channel"] == "email"
    times = [datetime.fromisoformat(t["at"]) for t in body["trace"]]
    assert times == sorted(times) and (times[-1] - times[0]).total_seconds() >= 86400  # the clock fast-forwarded

    assert keen.status_code == 200, keen.text
    came = keen.json()
    assert came["status"] == "completed" and came["waited_seconds"] == 3600
    assert [(step, outcome) for step, _, outcome in steps(came)] == [
        ("wait-1h", "next"), ("bought", "event"), ("done", "exit")]
    assert came["effects"] == []  # the reminder is not sent when the checkout comes
    # nothing was saved or enrolled
    assert (await client.get("/v1/journeys", headers=reader)).json()["journeys"] == []
    assert (await client.get(f"/v1/profiles/{profile}/enrollments", headers=reader)).json()["enrollments"] == []


async def test_a_test_run_of_a_saved_draft_and_of_invalid_definitions(client, admin):
    jid = (await create(client, admin, CART, name="Cart"))["journey"]["id"]
    broken = (await create(client, admin, BROKEN, name="Broken"))["journey"]["id"]
    profile = new_profile()

    draft = await client.post(f"/v1/journeys/{jid}/test", headers=admin,
                              json={"profile_id": profile, "events": ["Checkout Started"]})
    inline = await client.post("/v1/journeys/test", headers=admin,
                               json={"definition": CART, "profile_id": profile, "events": ["Checkout Started"]})
    invalid_draft = await client.post(f"/v1/journeys/{broken}/test", headers=admin, json={"profile_id": profile})
    invalid_inline = await client.post("/v1/journeys/test", headers=admin,
                                       json={"definition": {}, "profile_id": profile})
    missing = await client.post(f"/v1/journeys/{uuid.uuid4()}/test", headers=admin, json={"profile_id": profile})

    assert draft.status_code == 200, draft.text
    assert steps(draft.json()) == steps(inline.json()) and draft.json()["effects"] == []
    assert (await client.get(f"/v1/journeys/{jid}", headers=admin)).json()["status"] == "draft"  # not published
    for response in (invalid_draft, invalid_inline):
        assert response.status_code == 200, response.text
        result = response.json()
        assert (result["status"], result["trace"], result["effects"]) == ("invalid", [], [])
        assert result["waited_seconds"] == 0 and result["exit_reason"] is None
    assert {(e["code"], e["path"]) for e in invalid_draft.json()["errors"]} == {
        ("invalid_duration", "/steps/0/duration"), ("dangling_edge", "/steps/1/next")}
    assert "missing_entry" in {e["code"] for e in invalid_inline.json()["errors"]}
    assert_problem(missing, 404, "journey_not_found")


async def test_dry_runs_of_api_and_tier_change_entries_cannot_be_estimated(client, tenant, db):
    reader = await scoped_key(db, tenant, "journeys:read")
    writer = await scoped_key(db, tenant, "journeys:write")
    jid = (await create(client, writer, REPLENISH))["journey"]["id"]
    broken = (await create(client, writer, BROKEN, name="Broken"))["journey"]["id"]
    tiers = {**REPLENISH, "entry": {"type": "tier_change", "to": "gold"}}

    inline = await client.post("/v1/journeys/dry-run", headers=reader, json={"definition": REPLENISH, "days": 7})
    default_days = await client.post("/v1/journeys/dry-run", headers=reader, json={"definition": REPLENISH})
    tier_change = await client.post("/v1/journeys/dry-run", headers=reader, json={"definition": tiers})
    draft = await client.post(f"/v1/journeys/{jid}/dry-run", headers=reader, json={"days": 90})
    no_body = await client.post(f"/v1/journeys/{jid}/dry-run", headers=reader)

    for response in (inline, default_days, draft, no_body):
        assert response.status_code == 200, response.text
        assert response.json() == NOT_ESTIMATED
    assert tier_change.status_code == 200, tier_change.text
    assert tier_change.json() == {**NOT_ESTIMATED, "basis": "tier_change entries cannot be estimated from past events"}

    bad_inline = assert_problem(
        await client.post("/v1/journeys/dry-run", headers=reader, json={"definition": BROKEN}), 422,
        "invalid_definition")
    bad_draft = assert_problem(await client.post(f"/v1/journeys/{broken}/dry-run", headers=reader), 409,
                               "invalid_definition")
    for problem in (bad_inline, bad_draft):
        assert {(e["code"], e["path"]) for e in problem["definition_errors"]} == {
            ("invalid_duration", "/steps/0/duration"), ("dangling_edge", "/steps/1/next")}
    empty = assert_problem(await client.post("/v1/journeys/dry-run", headers=reader, json={"definition": {}}), 422,
                           "invalid_definition")
    assert "missing_entry" in {e["code"] for e in empty["definition_errors"]}
    assert_problem(await client.post(f"/v1/journeys/{uuid.uuid4()}/dry-run", headers=reader), 404,
                   "journey_not_found")
    assert (await client.get(f"/v1/journeys/{jid}", headers=reader)).json()["status"] == "draft"


async def test_test_and_dry_run_bodies_are_validated(client, admin):
    jid = (await create(client, admin, CART, name="Cart"))["journey"]["id"]
    ok = {"definition": CART, "profile_id": new_profile()}

    cases = (
        (await client.post("/v1/journeys/test", headers=admin, json={"definition": CART}), "#/profile_id"),
        (await client.post("/v1/journeys/test", headers=admin, json={**ok, "profile_id": "rachel"}), "#/profile_id"),
        (await client.post("/v1/journeys/test", headers=admin, json={"profile_id": new_profile()}), "#/definition"),
        (await client.post("/v1/journeys/test", headers=admin, json={**ok, "definition": orjson.dumps(CART).decode()}),
         "#/definition"),
        (await client.post("/v1/journeys/test", headers=admin, json={**ok, "context": ["a"]}), "#/context"),
        (await client.post("/v1/journeys/test", headers=admin, json={**ok, "events": "Checkout Started"}), "#/events"),
        (await client.post("/v1/journeys/test", headers=admin, json={**ok, "events": [""]}), "#/events/0"),
        (await client.post("/v1/journeys/test", headers=admin, json={**ok, "colour": "red"}), "#/colour"),
        (await client.post(f"/v1/journeys/{jid}/test", headers=admin, json={}), "#/profile_id"),
        (await client.post(f"/v1/journeys/{jid}/test", headers=admin, json=ok), "#/definition"),
        (await client.post("/v1/journeys/dry-run", headers=admin, json={}), "#/definition"),
        (await client.post("/v1/journeys/dry-run", headers=admin, json={"definition": CART, "days": 0}), "#/days"),
        (await client.post("/v1/journeys/dry-run", headers=admin, json={"definition": CART, "days": 366}), "#/days"),
        (await client.post("/v1/journeys/dry-run", headers=admin, json={"definition": [1]}), "#/definition"),
        (await client.post(f"/v1/journeys/{jid}/dry-run", headers=admin, json={"days": "a month"}), "#/days"),
        (await client.post(f"/v1/journeys/{jid}/dry-run", headers=admin, json={"definition": CART}), "#/definition"),
    )
    for response, pointer in cases:
        problem = assert_problem(response, 422, "validation_failed")
        assert problem["errors"][0]["pointer"] == pointer, problem
    assert_problem(await client.post("/v1/journeys/not-a-uuid/test", headers=admin,
                                     json={"profile_id": ok["profile_id"]}), 400, "invalid_request")
    assert_problem(await client.post("/v1/journeys/not-a-uuid/dry-run", headers=admin), 400, "invalid_request")


async def test_test_runs_and_dry_runs_need_journeys_read(client, tenant, db):
    jid = (await create(client, bearer(tenant.secret_key), CART, name="Cart"))["journey"]["id"]
    reader = await scoped_key(db, tenant, "journeys:read")
    writer = await scoped_key(db, tenant, "journeys:write")
    loyalty = await scoped_key(db, tenant, "loyalty:read", "loyalty:write", "profiles:read")
    profile = new_profile()
    calls = (
        ("/v1/journeys/test", {"definition": CART, "profile_id": profile}),
        (f"/v1/journeys/{jid}/test", {"profile_id": profile}),
        ("/v1/journeys/dry-run", {"definition": REPLENISH}),
        (f"/v1/journeys/{jid}/dry-run", {}),
    )

    for path, body in calls:
        assert_problem(await client.post(path, json=body), 401, "missing_api_key")
        assert_problem(await client.post(path, headers=bearer(tenant.write_key), json=body), 403,
                       "secret_key_required")
        assert_problem(await client.post(path, headers=loyalty, json=body), 403, "insufficient_scope")
        problem = assert_problem(await client.post(path, headers=writer, json=body), 403, "insufficient_scope")
        assert problem["required_scope"] == "journeys:read"
    for path, body in calls[:2]:
        assert (await client.post(path, headers=reader, json=body)).status_code == 200, path
    assert (await client.post(calls[2][0], headers=reader, json=calls[2][1])).json() == NOT_ESTIMATED


async def test_another_tenant_cannot_test_or_dry_run_a_draft(client, admin, make_tenant):
    jid = (await create(client, admin, CART, name="Cart"))["journey"]["id"]
    other = bearer((await make_tenant()).secret_key)

    assert_problem(await client.post(f"/v1/journeys/{jid}/test", headers=other, json={"profile_id": new_profile()}),
                   404, "journey_not_found")
    assert_problem(await client.post(f"/v1/journeys/{jid}/dry-run", headers=other), 404, "journey_not_found")


# ---- errors --------------------------------------------------------------------------------------


async def test_scopes(client, tenant, db):
    jid = await live(client, bearer(tenant.secret_key))
    reader = await scoped_key(db, tenant, "journeys:read")
    writer = await scoped_key(db, tenant, "journeys:write")
    loyalty = await scoped_key(db, tenant, "loyalty:read", "loyalty:write", "profiles:read")
    body = {"name": "x", "definition": REPLENISH}

    assert_problem(await client.get("/v1/journeys"), 401, "missing_api_key")
    assert_problem(await client.get("/v1/journeys", headers=bearer("sk_nope")), 401, "invalid_api_key")
    assert_problem(await client.get("/v1/journeys", headers=bearer(tenant.write_key)), 403, "secret_key_required")
    assert_problem(await client.get("/v1/journeys", headers=loyalty), 403, "insufficient_scope")
    assert_problem(await client.get(f"/v1/profiles/{new_profile()}/enrollments", headers=loyalty), 403,
                   "insufficient_scope")
    assert_problem(await client.post("/v1/journeys", headers=reader, json=body), 403, "insufficient_scope")
    assert_problem(await client.put(f"/v1/journeys/{jid}", headers=reader, json=body), 403, "insufficient_scope")
    for action in ("publish", "pause", "resume", "archive"):
        assert_problem(await client.post(f"/v1/journeys/{jid}/{action}", headers=reader), 403, "insufficient_scope")
    assert_problem(await enrol(client, reader, jid, new_profile()), 403, "insufficient_scope")
    assert_problem(await client.get(f"/v1/journeys/{jid}", headers=writer), 403, "insufficient_scope")
    assert_problem(await client.get(f"/v1/journeys/{jid}/stats", headers=writer), 403, "insufficient_scope")
    problem = assert_problem(await client.get("/v1/journeys", headers=writer), 403, "insufficient_scope")
    assert problem["required_scope"] == "journeys:read"

    assert (await client.get(f"/v1/journeys/{jid}/stats", headers=reader)).status_code == 200
    assert (await client.post("/v1/journeys/validate", headers=reader, json={"definition": REPLENISH})).status_code \
        == 200
    assert (await enrol(client, writer, jid, new_profile())).status_code == 201


async def test_bad_bodies_are_422_and_bad_parameters_400(client, admin):
    jid = await live(client, admin)

    as_text = await client.post("/v1/journeys", headers=admin,
                                json={"name": "x", "definition": orjson.dumps(REPLENISH).decode()})
    no_definition = await client.post("/v1/journeys", headers=admin, json={"name": "x"})
    no_name = await client.post("/v1/journeys", headers=admin, json={"name": "", "definition": REPLENISH})
    unknown_field = await client.post("/v1/journeys", headers=admin,
                                      json={"name": "x", "definition": REPLENISH, "colour": "red"})
    nul = await client.post("/v1/journeys", headers=admin,
                            json={"name": "x", "definition": {**REPLENISH, "note": "a\x00b"}})
    huge_int = await client.post("/v1/journeys/validate", headers=admin,
                                 json={"definition": {**REPLENISH, "holdout_percent": 2**70}})
    list_definition = await client.post("/v1/journeys/validate", headers=admin, json={"definition": [1]})
    not_json = await client.post("/v1/journeys", headers={**admin, "content-type": "application/json"},
                                 content=b"{nope")
    bad_profile = await enrol(client, admin, jid, "rachel")
    no_profile = await client.post(f"/v1/journeys/{jid}/enrollments", headers=admin, json={"entry_key": "k"})
    bad_context = await enrol(client, admin, jid, new_profile(), context=["a"])

    for response, pointer in ((as_text, "#/definition"), (no_definition, "#/definition"), (no_name, "#/name"),
                              (unknown_field, "#/colour"), (nul, "#/definition"), (huge_int, "#/definition"),
                              (list_definition, "#/definition"), (bad_profile, "#/profile_id"),
                              (no_profile, "#/profile_id"), (bad_context, "#/context")):
        problem = assert_problem(response, 422, "validation_failed")
        assert problem["errors"][0]["pointer"] == pointer, problem
    assert not_json.status_code in (400, 422) and not_json.headers["content-type"] == PROBLEM

    assert_problem(await client.get("/v1/journeys/not-a-uuid", headers=admin), 400, "invalid_request")
    assert_problem(await client.get("/v1/enrollments/not-a-uuid", headers=admin), 400, "invalid_request")
    assert_problem(await client.get("/v1/journeys", headers=admin, params={"limit": 0}), 400, "invalid_request")
    assert_problem(await client.get("/v1/journeys", headers=admin, params={"status": "live"}), 400,
                   "invalid_request")
    assert_problem(await client.get(f"/v1/journeys/{jid}", headers=admin, params={"version": 0}), 400,
                   "invalid_request")
    assert_problem(await client.get(f"/v1/journeys/{jid}/enrollments", headers=admin, params={"cursor": "junk"}),
                   400, "invalid_page_token")


async def test_unknown_things_are_404_problems_with_their_codes(client, admin):
    missing = str(uuid.uuid4())
    body = {"name": "x", "definition": REPLENISH}

    assert_problem(await client.get(f"/v1/journeys/{missing}", headers=admin), 404, "journey_not_found")
    assert_problem(await client.put(f"/v1/journeys/{missing}", headers=admin, json=body), 404, "journey_not_found")
    assert_problem(await client.post(f"/v1/journeys/{missing}/validate", headers=admin), 404, "journey_not_found")
    for action in ("publish", "pause", "resume", "archive"):
        assert_problem(await client.post(f"/v1/journeys/{missing}/{action}", headers=admin), 404, "journey_not_found")
    assert_problem(await enrol(client, admin, missing, new_profile()), 404, "journey_not_found")
    assert_problem(await client.get(f"/v1/journeys/{missing}/enrollments", headers=admin), 404, "journey_not_found")
    assert_problem(await client.get(f"/v1/journeys/{missing}/stats", headers=admin), 404, "journey_not_found")
    assert_problem(await client.get(f"/v1/enrollments/{missing}", headers=admin), 404, "enrollment_not_found")


async def test_another_tenant_sees_none_of_it(client, admin, make_tenant):
    jid = await live(client, admin)
    profile = new_profile()
    enrollment = (await enrol(client, admin, jid, profile)).json()["enrollment"]["id"]
    other = bearer((await make_tenant()).secret_key)

    assert (await client.get("/v1/journeys", headers=other)).json()["journeys"] == []
    assert_problem(await client.get(f"/v1/journeys/{jid}", headers=other), 404, "journey_not_found")
    assert_problem(await client.put(f"/v1/journeys/{jid}", headers=other,
                                    json={"name": "mine", "definition": REPLENISH}), 404, "journey_not_found")
    assert_problem(await client.post(f"/v1/journeys/{jid}/archive", headers=other), 404, "journey_not_found")
    assert_problem(await enrol(client, other, jid, profile), 404, "journey_not_found")
    assert_problem(await client.get(f"/v1/journeys/{jid}/enrollments", headers=other), 404, "journey_not_found")
    assert_problem(await client.get(f"/v1/journeys/{jid}/stats", headers=other), 404, "journey_not_found")
    assert_problem(await client.get(f"/v1/enrollments/{enrollment}", headers=other), 404, "enrollment_not_found")
    assert (await client.get(f"/v1/profiles/{profile}/enrollments", headers=other)).json()["enrollments"] == []
    mine = (await client.get(f"/v1/journeys/{jid}", headers=admin)).json()
    assert (mine["name"], mine["status"]) == ("Replenish", "active")


# ---- docs ----------------------------------------------------------------------------------------


async def test_openapi_lists_the_journey_routes_under_their_tag(client):
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in ("/v1/journeys", "/v1/journeys/{journey_id}", "/v1/journeys/validate",
                 "/v1/journeys/{journey_id}/validate", "/v1/journeys/{journey_id}/publish",
                 "/v1/journeys/{journey_id}/pause", "/v1/journeys/{journey_id}/resume",
                 "/v1/journeys/{journey_id}/archive", "/v1/journeys/{journey_id}/enrollments",
                 "/v1/profiles/{profile_id}/enrollments", "/v1/enrollments/{enrollment_id}",
                 "/v1/journeys/{journey_id}/stats", "/v1/journeys/test", "/v1/journeys/{journey_id}/test",
                 "/v1/journeys/dry-run", "/v1/journeys/{journey_id}/dry-run"):
        assert path in paths, path
        assert all(op["tags"] == ["journeys"] for op in paths[path].values()), path
    assert "journeys" in {t["name"] for t in spec["tags"]}
    for path in ("/v1/journeys", "/v1/journeys/{journey_id}/publish", "/v1/journeys/{journey_id}/enrollments"):
        assert "Idempotency-Key" in {p["name"] for p in paths[path]["post"]["parameters"]}, path
    assert spec["components"]["schemas"]["JourneyWrite"]["examples"]
    for name in ("DefinitionTestRequest", "DraftTestRequest", "DefinitionDryRunRequest", "DraftDryRunRequest"):
        assert spec["components"]["schemas"][name]["examples"], name
    assert set(spec["components"]["schemas"]["JourneyTestResult"]["properties"]) == {
        "status", "exit_reason", "waited_seconds", "trace", "effects", "errors"}
    assert {"401", "403", "404", "409", "422"} <= set(paths["/v1/journeys/{journey_id}/publish"]["post"]["responses"])
