from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from journey.app import MIGRATIONS, build
from journey.settings import JourneySettings
from mcloud.journey.v1 import journey_pb2_grpc
from mcloud_common.clock import ManualClock
from mcloud_common.testing.services import TenantApi, running_service

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def journey_db(make_database) -> str:
    return await make_database("journey", migrations=MIGRATIONS)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def journey(journey_db, redis_url, clock):
    """A real journey service on a ManualClock (without its worker: tests drive one) and a stub."""
    settings = JourneySettings(database_url=journey_db, redis_url=redis_url, grpc_port=0)
    async with running_service(build, settings, clock=clock, jobs=False) as (service, channel):
        yield journey_pb2_grpc.JourneyServiceStub(channel), service


Api = TenantApi  # calls the service as one tenant


@pytest.fixture
def api(journey) -> Api:
    return Api(journey[0], str(uuid.uuid4()))


@pytest.fixture
def api_for(journey):
    return lambda: Api(journey[0], str(uuid.uuid4()))
