"""Tracking plans through the real gRPC server: schemas checked on save, violations blocked or flagged
on ingest, counted per event and outcome."""

from __future__ import annotations

import asyncpg
import grpc
import orjson
import pytest

from identity.app import build
from mcloud.identity.v1 import identity_pb2 as pb
from mcloud.identity.v1 import identity_pb2_grpc
from mcloud_common.db import asyncpg_dsn
from mcloud_common.testing.services import running_service

ORDER = {
    "type": "object",
    "properties": {"revenue": {"type": "number"}, "currency": {"enum": ["CNY", "USD"]},
                   "products": {"type": "array", "items": {"type": "object", "required": ["sku"]}}},
    "required": ["revenue"],
}
TRAITS = {"type": "object", "properties": {"email": {"type": "string", "format": "email"}, "age": {"type": "integer"}}}

@pytest.fixture
async def identity(identity_db, settings_for):
    """The real service without background jobs (this area needs none; the relay still runs)."""
    async with running_service(build, settings_for(identity_db), jobs=False) as (service, channel):
        yield identity_pb2_grpc.IdentityServiceStub(channel), service


def plan(mode: str, *, allow_unplanned: bool = True, **extra) -> str:
    return orjson.dumps({"mode": mode, "events": {"Order Completed": ORDER}, "traits": TRAITS,
                         "allow_unplanned": allow_unplanned, **extra}).decode()


async def set_plan(api, text: str) -> pb.SetTrackingPlanResponse:
    return await api.call("SetTrackingPlan", pb.SetTrackingPlanRequest(plan_json=text))


async def violations(api) -> dict[tuple[str, str], pb.TrackingPlanViolations]:
    got = await api.call("GetTrackingPlan", pb.GetTrackingPlanRequest())
    return {(v.event, v.outcome): v for v in got.violations}


def error_code(err: pytest.ExceptionInfo) -> str:
    return dict(err.value.trailing_metadata())["mcloud-error-code"]


@pytest.mark.parametrize(("text", "reason"), [
    ("{not json", "not valid JSON"),
    ('["a list"]', "must be a JSON object"),
    ('{"mode": "warn"}', "mode must be 'block' or 'flag'"),
    ('{"mode": "block", "colour": 1}', "unknown keys ['colour']"),
    ('{"events": {"Order Completed": {"type": "objct"}}}', "events['Order Completed'].type"),
    ('{"events": {"Order Completed": {"pattern": "("}}}', "is not a 'regex'"),
    ('{"events": {"A": 3}}', "must be a JSON Schema"),
    ('{"traits": {"$ref": "https://example.com/schema.json"}}', "only local references"),
    ('{"allow_unplanned": "no"}', "allow_unplanned must be true or false"),
])
async def test_a_plan_that_is_not_valid_is_refused_with_the_reason(api, text, reason):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await set_plan(api, text)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(err) == "invalid_tracking_plan"
    assert reason in err.value.details()
    assert (await api.call("GetTrackingPlan", pb.GetTrackingPlanRequest())).plan_json == ""


async def test_block_mode_rejects_violations_naming_the_failing_path_and_counts_them(api):
    saved = await set_plan(api, plan("block", allow_unplanned=False))
    assert orjson.loads(saved.plan_json)["mode"] == "block"
    r = await api.ingest(
        api.track("Order Completed", user_id="u1", revenue=39.9, currency="CNY"),
        api.track("Order Completed", user_id="u1", revenue="lots"),
        api.track("Order Completed", user_id="u1", revenue=1, products=[{"name": "no sku"}]),
        api.track("Coupon Guessed", user_id="u1"),
        api.identify(user_id="u1", email="not-an-email"),
        api.identify(user_id="u1", age=41, email="rachel@example.com"),
        pb.InboundEvent(type=pb.CALL_TYPE_PAGE, message_id="page-1", user_id="u1", name="Home", channel="web"),
    )
    assert r.accepted == 3  # the good order, the good identify, the page (pages are not planned)
    rejected = {x.index: x for x in r.rejected}
    assert sorted(rejected) == [1, 2, 3, 4]
    assert {x.code for x in rejected.values()} == {"tracking_plan_violation"}
    assert rejected[1].detail == "properties.revenue: 'lots' is not of type 'number'"
    assert rejected[2].detail == "properties.products[0]: 'sku' is a required property"
    assert "'Coupon Guessed' is not in the tracking plan" in rejected[3].detail
    assert rejected[4].detail.startswith("traits.email: ")

    counts = await violations(api)
    assert {k: v.count for k, v in counts.items()} == {
        ("Order Completed", "blocked"): 2, ("Coupon Guessed", "blocked"): 1, ("$identify", "blocked"): 1}
    assert counts[("Order Completed", "blocked")].last_error.startswith("properties.products[0]")
    assert counts[("Order Completed", "blocked")].last_seen_at.seconds > 0

    # counts add up across batches
    await api.ingest(api.track("Order Completed", user_id="u2"), api.track("Order Completed", user_id="u3"))
    counts = await violations(api)
    assert counts[("Order Completed", "blocked")].count == 4
    assert counts[("Order Completed", "blocked")].last_error == "properties: 'revenue' is a required property"


async def test_flag_mode_stores_violating_events_marked_and_counted(api, identity_db):
    await set_plan(api, plan("flag"))
    r = await api.ingest(api.track("Order Completed", user_id="u1", revenue="lots"),
                         api.track("Order Completed", user_id="u1", revenue=5),
                         api.track("Anything Else", user_id="u1"))
    assert r.accepted == 3 and not r.rejected
    counts = await violations(api)
    assert {k: v.count for k, v in counts.items()} == {("Order Completed", "flagged"): 1}

    conn = await asyncpg.connect(asyncpg_dsn(identity_db))
    try:
        rows = await conn.fetch("SELECT properties->>'revenue' AS revenue, context::text AS context FROM events "
                                "WHERE tenant_id = $1 AND name = 'Order Completed' ORDER BY properties->>'revenue'",
                                api.tenant)
    finally:
        await conn.close()
    marks = {row["revenue"]: orjson.loads(row["context"]).get("tracking_plan_violations") for row in rows}
    assert marks == {"5": None, "lots": ["properties.revenue: 'lots' is not of type 'number'"]}


async def test_an_empty_plan_removes_it_and_the_counts_stay(api):
    await set_plan(api, plan("block"))
    r = await api.ingest(api.track("Order Completed", user_id="u1"))
    assert [x.code for x in r.rejected] == ["tracking_plan_violation"]
    removed = await set_plan(api, "")
    assert removed.plan_json == ""
    r = await api.ingest(api.track("Order Completed", user_id="u1"))
    assert r.accepted == 1 and not r.rejected
    got = await api.call("GetTrackingPlan", pb.GetTrackingPlanRequest())
    assert got.plan_json == ""
    assert [(v.event, v.outcome, v.count) for v in got.violations] == [("Order Completed", "blocked", 1)]


async def test_plans_are_per_tenant(api, api_for):
    await set_plan(api, plan("block", allow_unplanned=False))
    other = api_for()
    r = await other.ingest(other.track("Unplanned", user_id="u1"))
    assert r.accepted == 1
    assert (await other.call("GetTrackingPlan", pb.GetTrackingPlanRequest())).plan_json == ""
    assert await violations(other) == {}


async def test_a_local_reference_that_points_nowhere_is_a_violation_not_an_error(api):
    await set_plan(api, orjson.dumps({"mode": "block", "events": {"Signed Up": {"$ref": "#/$defs/missing"}}}).decode())
    r = await api.ingest(api.track("Signed Up", user_id="u1"))
    assert [x.code for x in r.rejected] == ["tracking_plan_violation"]
    assert "cannot be applied" in r.rejected[0].detail
