"""Gateway test kit: a migrated gateway database, a fake IdentityService (gRPC, in-process, port 0)
that records what the gateway sends, a factory for running gateway apps behind httpx, and gateways in
front of a REAL loyalty service and a REAL journey service (each with its own migrated database, real
Valkey, a ManualClock)."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from mcloud.identity.v1 import identity_pb2, identity_pb2_grpc
from mcloud_common import errors
from mcloud_common.clock import ManualClock
from mcloud_common.db import asyncpg_dsn
from mcloud_common.embedded import free_port
from mcloud_common.grpc_server import GrpcService, tenant_id
from mcloud_common.testing.services import running_service

# pytest's importlib mode imports this file as "gateway.tests.conftest" and, to do so, first registers
# the folder gateway/ itself as a namespace package named "gateway", which shadows the real package
# (gateway/src/gateway). Put the real one back before anything imports from it.
if getattr(sys.modules.get("gateway"), "__file__", None) is None:
    sys.modules.pop("gateway", None)
    importlib.import_module("gateway")

from gateway.app import create_app
from gateway.repo import MIGRATIONS
from gateway.settings import SERVICES, GatewaySettings
from gateway.tenancy import NewTenant, create_tenant


@dataclass
class FakeIdentity(identity_pb2_grpc.IdentityServiceServicer):
    """Records IngestEvents requests with their tenant; dedupes message ids; rejects events named
    'identity-rejects-me'; serves profiles put into `profiles` (by tenant and id)."""

    ingested: list[tuple[str, identity_pb2.IngestEventsRequest]] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)
    profiles: dict[tuple[str, str], identity_pb2.Profile] = field(default_factory=dict)
    events: dict[tuple[str, str], list[identity_pb2.ProfileEvent]] = field(default_factory=dict)

    async def IngestEvents(self, request, context):
        tenant = tenant_id(context)
        self.ingested.append((tenant, request))
        response = identity_pb2.IngestEventsResponse()
        for i, event in enumerate(request.events):
            if event.name == "identity-rejects-me":
                response.rejected.add(index=i, code="rejected_by_identity", detail="no")
                response.profile_ids.append("")
            elif (tenant, event.message_id) in self.seen:
                response.duplicates += 1
                response.profile_ids.append(str(uuid.uuid4()))
            else:
                self.seen.add((tenant, event.message_id))
                response.accepted += 1
                response.profile_ids.append(str(uuid.uuid4()))
        return response

    def _find(self, tenant: str, request: identity_pb2.GetProfileRequest) -> identity_pb2.Profile:
        for (t, pid), profile in self.profiles.items():
            if t != tenant:
                continue
            if request.WhichOneof("key") == "profile_id" and pid == request.profile_id:
                return profile
            if request.WhichOneof("key") == "identifier" and any(
                i.type == request.identifier.type and i.value == request.identifier.value
                for i in profile.identifiers
            ):
                return profile
        raise errors.NotFound("no such profile", code="profile_not_found")

    async def GetProfile(self, request, context):
        if request.identifier.value == "boom":
            raise RuntimeError("secret internals: password=hunter2")
        return identity_pb2.GetProfileResponse(profile=self._find(tenant_id(context), request))

    async def ListProfileEvents(self, request, context):
        tenant = tenant_id(context)
        self._find(tenant, identity_pb2.GetProfileRequest(profile_id=request.profile_id))
        return identity_pb2.ListProfileEventsResponse(
            events=self.events.get((tenant, request.profile_id), []), next_page_token="next-1"
        )

    def all_events(self) -> list[identity_pb2.InboundEvent]:
        return [e for _, r in self.ingested for e in r.events]


@asynccontextmanager
async def serving_fake_identity() -> AsyncIterator[tuple[FakeIdentity, int]]:
    """A fresh fake identity service (health SERVING) and its port, for as long as the block runs."""
    servicer = FakeIdentity()

    def register(server):
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)
        return ["mcloud.identity.v1.IdentityService"]

    service = GrpcService("identity", "127.0.0.1:0", register, grace=0.1)
    port = await service.start()
    try:
        yield servicer, port
    finally:
        await service.stop()


@pytest.fixture
async def fake_identity() -> AsyncIterator[tuple[FakeIdentity, int]]:
    """A fresh fake identity service (health SERVING) and its port."""
    async with serving_fake_identity() as served:
        yield served


@pytest.fixture(scope="session")
async def gateway_db(make_database) -> str:
    """One migrated gateway database for the session; tests create their own tenants in it."""
    return await make_database("gw", migrations=MIGRATIONS)


@pytest.fixture
async def db(gateway_db) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(gateway_db))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def make_tenant(db) -> Callable[[], object]:
    """Factory: a new tenant with a unique name and its keys."""

    async def make(name: str | None = None) -> NewTenant:
        return await create_tenant(db, name or f"tenant-{uuid.uuid4().hex[:12]}")

    return make


GatewayFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def gateway(gateway_db, redis_url, fake_identity) -> GatewayFactory:
    """Factory: `async with gateway(**setting_overrides) as client` runs a gateway app (lifespan and
    all) whose services all point at the fake identity server unless overridden."""
    _, port = fake_identity

    @asynccontextmanager
    async def run(**overrides) -> AsyncIterator[httpx.AsyncClient]:
        values = {f"{name}_target": f"127.0.0.1:{port}" for name in SERVICES}
        values.update(database_url=gateway_db, redis_url=redis_url, key_cache_seconds=0)
        values.update(overrides)
        app = create_app(GatewaySettings(**values))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                yield client

    return run


LOYALTY_T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def loyalty_clock() -> ManualClock:
    """The loyalty service's clock (starts at LOYALTY_T0). Shared by a module's tests: only move it forward."""
    return ManualClock(LOYALTY_T0)


@pytest.fixture(scope="module")
async def loyalty_port(make_database, redis_url, loyalty_clock) -> AsyncIterator[int]:
    """A real loyalty service (no background jobs) on a free port, with its own migrated database."""
    # imported here so that the other gateway tests do not depend on the loyalty service importing
    from loyalty.app import MIGRATIONS as LOYALTY_MIGRATIONS
    from loyalty.app import build as build_loyalty
    from loyalty.settings import LoyaltySettings

    db = await make_database("loyalty", migrations=LOYALTY_MIGRATIONS)
    settings = LoyaltySettings(database_url=db, redis_url=redis_url, grpc_port=0)
    async with running_service(build_loyalty, settings, clock=loyalty_clock, jobs=False) as (service, _):
        yield service.port


@pytest.fixture(scope="module")
async def loyalty_client(gateway_db, redis_url, loyalty_port) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway in front of the real loyalty service; the other services are absent."""
    values = {f"{name}_target": f"127.0.0.1:{free_port()}" for name in SERVICES}
    values["loyalty_target"] = f"127.0.0.1:{loyalty_port}"
    app = create_app(GatewaySettings(database_url=gateway_db, redis_url=redis_url, key_cache_seconds=0, **values))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield http


JOURNEY_T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def journey_clock() -> ManualClock:
    """The journey service's clock (starts at JOURNEY_T0). Shared by a module's tests: only move it forward."""
    return ManualClock(JOURNEY_T0)


@pytest.fixture(scope="module")
async def journey_port(make_database, redis_url, journey_clock) -> AsyncIterator[int]:
    """A real journey service (no executor: nothing runs steps on its own) on a free port, with its own
    migrated database."""
    from journey.app import MIGRATIONS as JOURNEY_MIGRATIONS
    from journey.app import build as build_journey
    from journey.settings import JourneySettings

    db = await make_database("journey", migrations=JOURNEY_MIGRATIONS)
    settings = JourneySettings(database_url=db, redis_url=redis_url, grpc_port=0)
    async with running_service(build_journey, settings, clock=journey_clock, jobs=False) as (service, _):
        yield service.port


@pytest.fixture(scope="module")
async def journey_client(gateway_db, redis_url, journey_port) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway in front of the real journey service; the other services are absent."""
    values = {f"{name}_target": f"127.0.0.1:{free_port()}" for name in SERVICES}
    values["journey_target"] = f"127.0.0.1:{journey_port}"
    app = create_app(GatewaySettings(database_url=gateway_db, redis_url=redis_url, key_cache_seconds=0, **values))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield http


MESSAGING_T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def messaging_clock() -> ManualClock:
    """The messaging service's clock (starts at MESSAGING_T0). Shared by a module's tests: only move it forward."""
    return ManualClock(MESSAGING_T0)


@pytest.fixture(scope="module")
async def messaging_port(make_database, redis_url, messaging_clock) -> AsyncIterator[int]:
    """A real messaging service (with its senders; no SMTP configured unless a test configures a channel)
    on a free port, with its own migrated database."""
    from messaging.app import MIGRATIONS as MESSAGING_MIGRATIONS
    from messaging.app import build as build_messaging
    from messaging.settings import MessagingSettings

    db = await make_database("messaging", migrations=MESSAGING_MIGRATIONS)
    settings = MessagingSettings(database_url=db, redis_url=redis_url, grpc_port=0, send_interval_seconds=0.05,
                                 public_url="http://gateway")
    async with running_service(build_messaging, settings, clock=messaging_clock) as (service, _):
        yield service.port


@pytest.fixture(scope="module")
async def messaging_client(gateway_db, redis_url, messaging_port) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway in front of the real messaging service; the other services are absent."""
    values = {f"{name}_target": f"127.0.0.1:{free_port()}" for name in SERVICES}
    values["messaging_target"] = f"127.0.0.1:{messaging_port}"
    app = create_app(GatewaySettings(database_url=gateway_db, redis_url=redis_url, key_cache_seconds=0, **values))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield http


RECOMMEND_T0 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def recommend_clock() -> ManualClock:
    """The recommend service's clock (starts at RECOMMEND_T0). Shared by a module's tests: only move it forward."""
    return ManualClock(RECOMMEND_T0)


@pytest.fixture(scope="module")
async def recommend_identity() -> AsyncIterator[tuple[FakeIdentity, int]]:
    """A fake identity service shared by a module's recommend tests: put profiles into `profiles` (by tenant and
    id) and the gateway resolves their type:value identifiers."""
    async with serving_fake_identity() as served:
        yield served


@pytest.fixture(scope="module")
async def recommend_port(make_database, redis_url, recommend_clock, recommend_identity) -> AsyncIterator[int]:
    """A real recommend service (no bus consumer, no scheduled training) on a free port, with its own migrated
    database."""
    from recommend.app import MIGRATIONS as RECOMMEND_MIGRATIONS
    from recommend.app import build as build_recommend
    from recommend.settings import RecommendSettings

    _, identity_port = recommend_identity
    db = await make_database("recommend", migrations=RECOMMEND_MIGRATIONS)
    # catalogue, settings and model changes seen within 50 ms rather than 10 s
    settings = RecommendSettings(database_url=db, redis_url=redis_url, grpc_port=0, refresh_seconds=0.05,
                                 identity_target=f"127.0.0.1:{identity_port}")
    async with running_service(build_recommend, settings, clock=recommend_clock, jobs=False) as (service, _):
        yield service.port


@pytest.fixture(scope="module")
async def recommend_client(
    gateway_db, redis_url, recommend_port, recommend_identity
) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway in front of the real recommend service and the module's fake identity; the other services are
    absent."""
    _, identity_port = recommend_identity
    values = {f"{name}_target": f"127.0.0.1:{free_port()}" for name in SERVICES}
    values["recommend_target"] = f"127.0.0.1:{recommend_port}"
    values["identity_target"] = f"127.0.0.1:{identity_port}"
    app = create_app(GatewaySettings(database_url=gateway_db, redis_url=redis_url, key_cache_seconds=0, **values))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield http
