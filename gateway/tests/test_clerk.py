"""GET /v1/clerk/{identifier}: the store-clerk tablet's 360 view, composed by the gateway from a REAL
identity service and loyalty/recommend as they are: the real (not yet implemented) servers, absent,
too slow, or small stand-ins that answer like the contract says (to check the composition)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import SERVICES, GatewaySettings
from gateway.tenancy import create_api_key
from identity.app import MIGRATIONS as IDENTITY_MIGRATIONS
from identity.app import build as build_identity
from identity.settings import IdentitySettings
from loyalty.app import MIGRATIONS as LOYALTY_MIGRATIONS
from loyalty.app import build as build_loyalty
from loyalty.settings import LoyaltySettings
from mcloud.loyalty.v1 import loyalty_pb2, loyalty_pb2_grpc
from mcloud.recommend.v1 import recommend_pb2, recommend_pb2_grpc
from mcloud_common import errors
from mcloud_common.embedded import free_port
from mcloud_common.grpc_client import make_channel, tenant_metadata
from mcloud_common.grpc_server import GrpcService, tenant_id
from mcloud_common.testing.services import running_service
from mcloud_common.timestamps import to_timestamp
from recommend.app import MIGRATIONS as RECOMMEND_MIGRATIONS
from recommend.app import build as build_recommend
from recommend.settings import RecommendSettings

PROBLEM = "application/problem+json"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ---- services ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def identity_port(make_database, redis_url) -> AsyncIterator[int]:
    db = await make_database("identity", migrations=IDENTITY_MIGRATIONS)
    async with running_service(build_identity, IdentitySettings(database_url=db, redis_url=redis_url, grpc_port=0)) as (
        service,
        _,
    ):
        yield service.port


@pytest.fixture(scope="module")
async def real_loyalty_and_recommend(make_database, redis_url) -> AsyncIterator[tuple[int, int]]:
    """loyalty-svc and recommend-svc as their build() makes them."""
    loyalty_db = await make_database("loyalty", migrations=LOYALTY_MIGRATIONS)
    recommend_db = await make_database("recommend", migrations=RECOMMEND_MIGRATIONS)
    async with (
        running_service(build_loyalty, LoyaltySettings(database_url=loyalty_db, redis_url=redis_url, grpc_port=0)) as (
            loyalty,
            _,
        ),
        running_service(
            build_recommend, RecommendSettings(database_url=recommend_db, redis_url=redis_url, grpc_port=0)
        ) as (recommend, _),
    ):
        yield loyalty.port, recommend.port


class StandInLoyalty(loyalty_pb2_grpc.LoyaltyServiceServicer):
    """Answers GetMember like the contract says: Rachel is Silver, 2,000 points from Gold."""

    def __init__(self, members: set[str], delay: float = 0.0) -> None:
        self.members = members
        self.delay = delay
        self.calls: list[tuple[str, loyalty_pb2.GetMemberRequest]] = []

    async def GetMember(self, request, context):
        self.calls.append((tenant_id(context), request))
        await asyncio.sleep(self.delay)
        if request.profile_id not in self.members:
            raise errors.NotFound("not a member", code="member_not_found")
        return loyalty_pb2.GetMemberResponse(member=loyalty_pb2.Member(
            profile_id=request.profile_id, program_id="prog-1", member_number="M0001",
            status=loyalty_pb2.MEMBER_STATUS_ACTIVE,
            balance=loyalty_pb2.Balance(available=1200, pending=300, qualifying=4000, next_expiring_points=100,
                                        next_expiry_at=to_timestamp(datetime.fromisoformat("2027-06-30T00:00:00+00:00"))),
            tier=loyalty_pb2.TierStatus(tier_code="silver", tier_name="Silver", rank=1,
                                        since=to_timestamp(datetime.fromisoformat("2026-11-11T10:00:00+00:00")),
                                        next_tier_code="gold", next_tier_name="Gold", next_tier_threshold=6000,
                                        points_to_next_tier=2000),
            benefits=[loyalty_pb2.Benefit(code="free_shipping", name="Free shipping", description="always")],
        ))


class StandInRecommend(recommend_pb2_grpc.RecommendServiceServicer):
    def __init__(self) -> None:
        self.calls: list[tuple[str, recommend_pb2.RecommendRequest]] = []

    async def Recommend(self, request, context):
        self.calls.append((tenant_id(context), request))
        return recommend_pb2.RecommendResponse(recommendation_id="rec-1", items=[
            recommend_pb2.RecommendedItem(
                item_id="socks-1", score=0.9, recommender="cross_category", explanation="Goes with Pegasus 40",
                item=recommend_pb2.Item(id="socks-1", title="Run socks", price_minor=9900, currency="CNY",
                                        image_url="https://img.example/socks.png")),
            recommend_pb2.RecommendedItem(item_id="gel-2", score=0.5, recommender="popular",
                                          explanation="Popular in Running"),
        ])


@asynccontextmanager
async def serving(name: str, servicer, add) -> AsyncIterator[int]:
    def register(server):
        add(servicer, server)
        return [f"mcloud.{name}.v1"]

    service = GrpcService(name, "127.0.0.1:0", register, grace=0.1)
    port = await service.start()
    try:
        yield port
    finally:
        await service.stop()


@pytest.fixture
def gateway(gateway_db, redis_url, identity_port):
    """Factory: a gateway on the real identity, with loyalty/recommend at the given ports (absent
    when None)."""

    @asynccontextmanager
    async def run(loyalty: int | None = None, recommend: int | None = None, **overrides):
        values = {f"{name}_target": f"127.0.0.1:{free_port()}" for name in SERVICES}
        values["identity_target"] = f"127.0.0.1:{identity_port}"
        for name, port in (("loyalty", loyalty), ("recommend", recommend)):
            if port is not None:
                values[f"{name}_target"] = f"127.0.0.1:{port}"
        values.update(overrides)
        app = create_app(GatewaySettings(database_url=gateway_db, redis_url=redis_url, key_cache_seconds=0, **values))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                yield client

    return run


# ---- data ----------------------------------------------------------------------------------------


async def rachel_browses(client: httpx.AsyncClient, tenant) -> dict:
    """Rachel, anonymous, looks at running shoes, puts one in her cart, orders socks, then signs up."""
    anon = f"anon-{uuid.uuid4()}"
    email = f"rachel-{uuid.uuid4().hex[:6]}@example.com"
    t = iter(range(10, 60))
    batch = [
        {"type": "page", "anonymousId": anon, "name": "Running", "properties": {"path": "/running"}},
        *[{"type": "track", "anonymousId": anon, "event": "Product Viewed", "properties": {"product_id": p}}
          for p in ("shoe-1", "shoe-2", "shoe-1")],
        {"type": "track", "anonymousId": anon, "event": "Product Added", "properties": {"product_id": "shoe-1"}},
        {"type": "track", "anonymousId": anon, "event": "Order Completed", "properties": {"order_id": "o-1"}},
        {"type": "identify", "anonymousId": anon, "traits": {"email": email}},
    ]
    for call in batch:
        call["timestamp"] = f"2026-11-11T10:00:{next(t)}Z"
    r = await client.post("/v1/batch", headers=bearer(tenant.write_key), json={"batch": batch})
    assert r.status_code == 200 and r.json()["accepted"] == len(batch), r.text
    profile = await client.get(f"/v1/profiles/email:{email}", headers=bearer(tenant.secret_key))
    assert profile.status_code == 200, profile.text
    return {"email": email, "anon": anon, "id": profile.json()["id"]}


def assert_identity_parts(view: dict, rachel: dict) -> None:
    assert view["profile"]["id"] == rachel["id"]
    assert view["profile"]["traits"]["email"] == rachel["email"]
    assert view["cart"] == view["profile"]["computed"]["cart"] == ["shoe-1"]  # computed as events are stored
    views = [(e["type"], e["name"], e["properties"].get("product_id")) for e in view["recent_views"]]
    # newest first; the cart add and the order are not views
    assert views == [
        ("track", "Product Viewed", "shoe-1"),
        ("track", "Product Viewed", "shoe-2"),
        ("track", "Product Viewed", "shoe-1"),
        ("page", "Running", None),
    ]


# ---- degrade paths -------------------------------------------------------------------------------


async def test_view_shows_no_membership_and_what_the_tablet_can_sell(gateway, make_tenant, real_loyalty_and_recommend):
    loyalty_port, recommend_port = real_loyalty_and_recommend
    tenant = await make_tenant()
    items = [recommend_pb2.Item(id="sock-1", title="Run socks", categories=["socks"], in_stock=True),
             recommend_pb2.Item(id="jacket-1", title="Rain jacket", categories=["jackets"], in_stock=False)]
    async with make_channel(f"127.0.0.1:{recommend_port}") as channel:
        await recommend_pb2_grpc.RecommendServiceStub(channel).UpsertItems(
            recommend_pb2.UpsertItemsRequest(items=items), metadata=tenant_metadata(tenant.tenant_id))
    async with gateway(loyalty=loyalty_port, recommend=recommend_port) as client:
        rachel = await rachel_browses(client, tenant)
        r = await client.get(f"/v1/clerk/email:{rachel['email']}", headers=bearer(tenant.secret_key))
    assert r.status_code == 200, r.text
    view = r.json()
    assert_identity_parts(view, rachel)
    # the tenant has no loyalty program: loyalty answers "not a member", which is not an outage
    assert view["loyalty"] is None and view["unavailable"] == []
    # the store tablet shows what is in stock
    assert [i["item_id"] for i in view["recommendations"]] == ["sock-1"] and view["recommendation_id"]


async def test_view_degrades_when_loyalty_and_recommend_are_down(gateway, make_tenant):
    tenant = await make_tenant()
    async with gateway() as client:
        rachel = await rachel_browses(client, tenant)
        r = await client.get(f"/v1/clerk/anonymous_id:{rachel['anon']}", headers=bearer(tenant.secret_key))
    assert r.status_code == 200, r.text
    view = r.json()
    assert_identity_parts(view, rachel)
    assert view["loyalty"] is None and view["recommendations"] == []
    assert view["unavailable"] == ["loyalty", "recommend"]


async def test_a_slow_service_costs_at_most_its_deadline(gateway, make_tenant):
    tenant = await make_tenant()
    slow = StandInLoyalty(members=set(), delay=30)
    async with (
        serving("loyalty", slow, loyalty_pb2_grpc.add_LoyaltyServiceServicer_to_server) as loyalty_port,
        gateway(loyalty=loyalty_port, clerk_timeout_seconds=0.5) as client,
    ):
        rachel = await rachel_browses(client, tenant)
        started = time.monotonic()
        r = await client.get(f"/v1/clerk/{rachel['id']}", headers=bearer(tenant.secret_key))
        elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert r.json()["unavailable"] == ["loyalty", "recommend"]
    assert slow.calls, "loyalty was asked"
    assert elapsed < 3, elapsed  # the 30 s answer was not waited for (deadline 0.5 s)


# ---- composition ---------------------------------------------------------------------------------


async def test_view_composes_profile_cart_loyalty_and_recommendations(gateway, make_tenant):
    tenant = await make_tenant()
    loyalty, recommend = StandInLoyalty(members=set()), StandInRecommend()
    async with (
        serving("loyalty", loyalty, loyalty_pb2_grpc.add_LoyaltyServiceServicer_to_server) as loyalty_port,
        serving("recommend", recommend, recommend_pb2_grpc.add_RecommendServiceServicer_to_server) as rec_port,
        gateway(loyalty=loyalty_port, recommend=rec_port) as client,
    ):
        rachel = await rachel_browses(client, tenant)
        loyalty.members.add(rachel["id"])
        r = await client.get(f"/v1/clerk/email:{rachel['email']}", headers=bearer(tenant.secret_key))
    assert r.status_code == 200, r.text
    view = r.json()
    assert_identity_parts(view, rachel)
    assert view["unavailable"] == []
    assert view["loyalty"] == {
        "program_id": "prog-1",
        "member_number": "M0001",
        "status": "active",
        "tier": {"code": "silver", "name": "Silver", "rank": 1, "since": "2026-11-11T10:00:00Z"},
        "next_tier": {"code": "gold", "name": "Gold", "threshold": 6000, "points_to_go": 2000},
        "points": {"available": 1200, "pending": 300, "qualifying": 4000, "next_expiring": 100,
                   "next_expiry_at": "2027-06-30T00:00:00Z"},
        "benefits": [{"code": "free_shipping", "name": "Free shipping", "description": "always"}],
    }
    assert view["recommendation_id"] == "rec-1"
    assert view["recommendations"] == [
        {"item_id": "socks-1", "score": 0.9, "recommender": "cross_category", "explanation": "Goes with Pegasus 40",
         "title": "Run socks", "image_url": "https://img.example/socks.png", "price_minor": 9900, "currency": "CNY"},
        {"item_id": "gel-2", "score": 0.5, "recommender": "popular", "explanation": "Popular in Running",
         "title": None, "image_url": None, "price_minor": None, "currency": None},
    ]
    # both were asked about the resolved profile, for this tenant, in the store-tablet scenario
    [(loyalty_tenant, member_request)] = loyalty.calls
    [(recommend_tenant, rec_request)] = recommend.calls
    assert loyalty_tenant == recommend_tenant == tenant.tenant_id
    assert member_request.profile_id == rec_request.profile_id == rachel["id"]
    assert rec_request.scenario == recommend_pb2.SCENARIO_STORE_TABLET and rec_request.count == 10


async def test_a_customer_who_is_not_a_member_has_no_loyalty_part_and_nothing_is_unavailable(gateway, make_tenant):
    tenant = await make_tenant()
    loyalty, recommend = StandInLoyalty(members=set()), StandInRecommend()
    async with (
        serving("loyalty", loyalty, loyalty_pb2_grpc.add_LoyaltyServiceServicer_to_server) as loyalty_port,
        serving("recommend", recommend, recommend_pb2_grpc.add_RecommendServiceServicer_to_server) as rec_port,
        gateway(loyalty=loyalty_port, recommend=rec_port) as client,
    ):
        rachel = await rachel_browses(client, tenant)
        r = await client.get(f"/v1/clerk/{rachel['id']}", headers=bearer(tenant.secret_key))
    assert r.status_code == 200, r.text
    assert r.json()["loyalty"] is None and r.json()["unavailable"] == []


# ---- errors --------------------------------------------------------------------------------------


async def test_errors_are_problems(gateway, make_tenant, db):
    tenant = await make_tenant()
    events_only = await create_api_key(db, tenant.tenant_id, "secret", ["events:write"])
    async with gateway() as client:
        unknown = await client.get("/v1/clerk/email:nobody@example.com", headers=bearer(tenant.secret_key))
        unknown_id = await client.get(f"/v1/clerk/{uuid.uuid4()}", headers=bearer(tenant.secret_key))
        malformed = await client.get("/v1/clerk/just-a-name", headers=bearer(tenant.secret_key))
        write_key = await client.get("/v1/clerk/email:nobody@example.com", headers=bearer(tenant.write_key))
        no_scope = await client.get("/v1/clerk/email:nobody@example.com", headers=bearer(events_only))
        no_key = await client.get("/v1/clerk/email:nobody@example.com")
    for response, status, code in (
        (unknown, 404, "profile_not_found"),
        (unknown_id, 404, "profile_not_found"),
        (malformed, 400, "invalid_identifier"),
        (write_key, 403, "secret_key_required"),
        (no_scope, 403, "insufficient_scope"),
        (no_key, 401, "missing_api_key"),
    ):
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == code


async def test_identity_down_is_a_503_with_retry_after(gateway, make_tenant):
    tenant = await make_tenant()
    async with gateway(identity_target=f"127.0.0.1:{free_port()}") as client:
        r = await client.get("/v1/clerk/email:rachel@example.com", headers=bearer(tenant.secret_key))
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == PROBLEM and r.headers["retry-after"] == "1"
    assert r.json()["code"] == "service_unavailable"
