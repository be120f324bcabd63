from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from mcloud.recommend.v1 import recommend_pb2 as pb
from mcloud.recommend.v1 import recommend_pb2_grpc
from mcloud_common.clock import ManualClock
from mcloud_common.db import asyncpg_dsn
from mcloud_common.testing.services import TenantApi, running_service
from recommend.app import MIGRATIONS, build
from recommend.settings import RecommendSettings
from recommend.testing import sports_catalogue

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
async def recommend_db(make_database) -> str:
    return await make_database("recommend", migrations=MIGRATIONS)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def settings_overrides() -> dict:
    return {}


@pytest.fixture
async def recommend(request, recommend_db, redis_url, clock, settings_overrides):
    """A real recommend service on a ManualClock (identity unreachable: favourite categories unknown).
    Tests marked `with_jobs` also get the consumer, intent sweep and scheduled training."""
    jobs = request.node.get_closest_marker("with_jobs") is not None
    settings = RecommendSettings(database_url=recommend_db, redis_url=redis_url, grpc_port=0,
                                 identity_target="127.0.0.1:9", refresh_seconds=0.05, served_flush_seconds=0.05,
                                 intent_sweep_seconds=0.2, **settings_overrides)
    async with running_service(build, settings, clock=clock, jobs=jobs) as (service, channel):
        yield recommend_pb2_grpc.RecommendServiceStub(channel), service


@pytest.fixture
async def db(recommend_db):
    conn = await asyncpg.connect(asyncpg_dsn(recommend_db))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def api(recommend) -> TenantApi:
    return TenantApi(recommend[0], str(uuid.uuid4()))


@pytest.fixture
async def shop(api) -> TenantApi:
    """A tenant with the sports catalogue."""
    await api.call("UpsertItems", pb.UpsertItemsRequest(items=sports_catalogue()))
    return api
