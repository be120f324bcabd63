from __future__ import annotations

import uuid

import asyncpg
import orjson
import pytest

from identity.app import MIGRATIONS, build
from identity.settings import IdentitySettings
from mcloud.identity.v1 import identity_pb2 as pb
from mcloud.identity.v1 import identity_pb2_grpc
from mcloud_common.db import asyncpg_dsn
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.testing.services import running_service


@pytest.fixture
async def identity_db(make_database) -> str:
    return await make_database("identity", migrations=MIGRATIONS)


@pytest.fixture
def settings_for(redis_url):
    def make(db_url: str, **overrides) -> IdentitySettings:
        return IdentitySettings(database_url=db_url, redis_url=redis_url, grpc_port=0, **overrides)

    return make


@pytest.fixture
async def identity(request, identity_db, settings_for):
    """A real identity service (relay running) and a stub to call it. Tests marked
    `without_jobs` get it without background workers (segment worker, lifecycle pass, consumers)."""
    jobs = request.node.get_closest_marker("without_jobs") is None
    async with running_service(build, settings_for(identity_db), jobs=jobs) as (service, channel):
        yield identity_pb2_grpc.IdentityServiceStub(channel), service


@pytest.fixture
async def db(identity_db):
    """A plain connection to the service's database, for looking at what it stored."""
    conn = await asyncpg.connect(asyncpg_dsn(identity_db))
    try:
        yield conn
    finally:
        await conn.close()


class Api:
    """Small helpers to call a running identity service as one tenant."""

    def __init__(self, stub, tenant: str) -> None:
        self.stub = stub
        self.tenant = tenant
        self.md = tenant_metadata(tenant)
        self._n = 0

    def _mid(self) -> str:
        self._n += 1
        return f"msg-{self._n}-{uuid.uuid4().hex[:8]}"

    def track(self, event="Product Viewed", *, anonymous_id="", user_id="", channel="web", **props):
        return pb.InboundEvent(type=pb.CALL_TYPE_TRACK, message_id=self._mid(), anonymous_id=anonymous_id,
                               user_id=user_id, name=event, properties_json=orjson.dumps(props).decode(),
                               channel=channel)

    def identify(self, *, anonymous_id="", user_id="", channel="web", context=None, **traits):
        return pb.InboundEvent(type=pb.CALL_TYPE_IDENTIFY, message_id=self._mid(), anonymous_id=anonymous_id,
                               user_id=user_id, traits_json=orjson.dumps(traits).decode(), channel=channel,
                               context_json=orjson.dumps(context or {}).decode())

    def alias(self, *, previous_id: str, user_id: str):
        return pb.InboundEvent(type=pb.CALL_TYPE_ALIAS, message_id=self._mid(), previous_id=previous_id,
                               user_id=user_id, channel="web")

    async def ingest(self, *events) -> pb.IngestEventsResponse:
        return await self.stub.IngestEvents(pb.IngestEventsRequest(events=events), metadata=self.md)

    async def profile(self, identifier: str) -> pb.Profile:
        kind, _, value = identifier.partition(":")
        request = (pb.GetProfileRequest(profile_id=identifier) if not value
                   else pb.GetProfileRequest(identifier=pb.Identifier(type=kind, value=value)))
        return (await self.stub.GetProfile(request, metadata=self.md)).profile

    async def call(self, method: str, request):
        return await getattr(self.stub, method)(request, metadata=self.md)


@pytest.fixture
def api(identity) -> Api:
    return Api(identity[0], str(uuid.uuid4()))


@pytest.fixture
def api_for(identity):
    """Api for another tenant: api_for() -> a fresh tenant each call."""
    return lambda: Api(identity[0], str(uuid.uuid4()))
