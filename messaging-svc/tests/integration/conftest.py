from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from mcloud.events.v1 import event_pb2
from mcloud.messaging.v1 import messaging_pb2_grpc
from mcloud_common.bus import publish, streams_of
from mcloud_common.clock import ManualClock
from mcloud_common.db import asyncpg_dsn, create_pool
from mcloud_common.testing.services import TenantApi, running_service
from messaging.app import MIGRATIONS, build
from messaging.background.identity_events import make_consumer
from messaging.settings import MessagingSettings

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # a Monday, 18:00 in Asia/Shanghai

IDENTITY_SHARDS = 4  # identity's stream shards in these tests


@pytest.fixture
async def messaging_db(make_database) -> str:
    return await make_database("messaging", migrations=MIGRATIONS)


@pytest.fixture
def clock() -> ManualClock:
    """The service's clock: tests move time with clock.advance(...) / clock.set(...)."""
    return ManualClock(T0)


@pytest.fixture
def settings_overrides() -> dict:
    """Override in a test module (or with indirect parametrisation) to change service settings."""
    return {}


@pytest.fixture
async def messaging(request, messaging_db, redis_url, clock, settings_overrides):
    """A real messaging service (relay running, on a ManualClock) and a stub to call it. Tests marked
    `without_jobs` get it without background work (senders, campaigns, identity-events consumer)."""
    jobs = request.node.get_closest_marker("without_jobs") is None
    settings = MessagingSettings(database_url=messaging_db, redis_url=redis_url, grpc_port=0,
                                 send_interval_seconds=0.05, retry_base_seconds=1, **settings_overrides)
    async with running_service(build, settings, clock=clock, jobs=jobs) as (service, channel):
        yield messaging_pb2_grpc.MessagingServiceStub(channel), service


@pytest.fixture
async def db(messaging_db):
    """A plain connection to the service's database, for looking at what it stored."""
    conn = await asyncpg.connect(asyncpg_dsn(messaging_db))
    try:
        yield conn
    finally:
        await conn.close()


Api = TenantApi  # calls the service as one tenant


@pytest.fixture
def api(messaging) -> Api:
    return Api(messaging[0], str(uuid.uuid4()))


@pytest.fixture
async def pool(messaging_db):
    p = await create_pool(messaging_db)
    yield p
    await p.close()


@pytest.fixture
async def feed(pool, redis, clock):
    """send(*events) puts identity events on the bus and has a fresh messaging consumer apply them."""
    group = f"messaging-test-{uuid.uuid4().hex[:8]}"
    for stream in streams_of("identity", IDENTITY_SHARDS):  # from now on: not the other tests' events
        await redis.xgroup_create(stream, group, id="$", mkstream=True)
    consumer = make_consumer(pool, redis, clock, IDENTITY_SHARDS, group=group)
    consumer.block_ms = 0

    async def send(*events: event_pb2.Event) -> None:
        await publish(redis, events, "identity", IDENTITY_SHARDS)
        while await consumer.run_once():
            pass
        assert consumer.dead_lettered_total == 0

    return send
