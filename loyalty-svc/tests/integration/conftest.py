from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from loyalty.app import MIGRATIONS, build
from loyalty.settings import LoyaltySettings
from mcloud.loyalty.v1 import loyalty_pb2_grpc
from mcloud_common.clock import ManualClock
from mcloud_common.db import asyncpg_dsn
from mcloud_common.testing.services import TenantApi, running_service

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def loyalty_db(make_database) -> str:
    return await make_database("loyalty", migrations=MIGRATIONS)


@pytest.fixture
def clock() -> ManualClock:
    """The service's clock: tests move time with clock.advance(...) / clock.set(...)."""
    return ManualClock(T0)


@pytest.fixture
async def loyalty(request, loyalty_db, redis_url, clock):
    """A real loyalty service (relay running, on a ManualClock) and a stub to call it. Tests marked
    `without_jobs` get it without background work (jobs and the identity-events consumer)."""
    jobs = request.node.get_closest_marker("without_jobs") is None
    settings = LoyaltySettings(database_url=loyalty_db, redis_url=redis_url, grpc_port=0)
    async with running_service(build, settings, clock=clock, jobs=jobs) as (service, channel):
        yield loyalty_pb2_grpc.LoyaltyServiceStub(channel), service


@pytest.fixture
async def db(loyalty_db):
    """A plain connection to the service's database, for looking at what it stored."""
    conn = await asyncpg.connect(asyncpg_dsn(loyalty_db))
    try:
        yield conn
    finally:
        await conn.close()


Api = TenantApi  # calls the service as one tenant


@pytest.fixture
def api(loyalty) -> Api:
    return Api(loyalty[0], str(uuid.uuid4()))


@pytest.fixture
def api_for(loyalty):
    """Api for another tenant: api_for() -> a fresh tenant each call."""
    return lambda: Api(loyalty[0], str(uuid.uuid4()))
