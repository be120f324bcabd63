"""What every service process holds: its settings, an asyncpg pool on its own database, a Valkey
client, a clock and the outbox relay; and how it is wrapped into a gRPC service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import grpc
import redis.asyncio as aioredis
from google.protobuf.descriptor import FileDescriptor
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mcloud_common.bus import OutboxRelay, streams_of, trim_consumed
from mcloud_common.bus.gauges import sample_consumer_lag, sample_outbox
from mcloud_common.clock import Clock, clock_from_env
from mcloud_common.db import create_engine, create_pool, session_factory
from mcloud_common.grpc_server import GrpcService, Registrar
from mcloud_common.logs import get_logger
from mcloud_common.metrics import SAMPLE_FAILURES
from mcloud_common.settings import ServiceSettings

log = get_logger(__name__)


@dataclass
class Runtime:
    """`pool` (asyncpg) serves the hot paths; `sessions` (SQLAlchemy 2 async, same database, connects
    lazily) serves colder CRUD."""

    settings: ServiceSettings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    clock: Clock
    relay: OutboxRelay | None
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    tasks: list[asyncio.Task] = field(default_factory=list)
    closing: bool = False

    def every(self, seconds: float, job: Callable[[], Awaitable[object]], *, name: str) -> None:
        """Run `job` now and then every `seconds` until the service stops; a failing run is logged
        and retried at the next tick (maintenance, never on the request path)."""

        async def loop() -> None:
            while not self.closing:
                try:
                    await job()
                except Exception:
                    log.exception("periodic job failed", job=name)
                if asyncio.current_task().cancelling():  # redis-py can swallow a cancel mid-command
                    raise asyncio.CancelledError
                await asyncio.sleep(seconds)

        self.tasks.append(asyncio.create_task(loop(), name=name))

    def sample(self, job: Callable[[], Awaitable[object]], *, name: str) -> None:
        """Run `job` (it sets Prometheus gauges) every `metrics_sample_seconds`, only while this process
        serves /metrics: a scrape reads the last values, never a database."""
        if not self.settings.metrics_port:
            return

        async def counted() -> None:
            try:
                await job()
            except Exception:
                SAMPLE_FAILURES.labels(name).inc()
                raise

        self.every(self.settings.metrics_sample_seconds, counted, name=f"metrics-{name}")

    async def close(self) -> None:
        self.closing = True
        pending = set(self.tasks)
        # A cancel can be swallowed by a client library mid-command: cancel again until every task is done.
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1)
        if self.relay is not None:
            await self.relay.stop()
        await self.redis.aclose()
        await self.pool.close()
        await self.engine.dispose()


async def open_runtime(settings: ServiceSettings, *, clock: Clock | None = None, relay: bool = True) -> Runtime:
    """Connect to the service's database and the bus; start the outbox relay unless `relay=False`
    (tests that need to observe the outbox before it is published)."""
    pool = await create_pool(settings.database_url, max_size=settings.db_pool_size,
                             server_settings=settings.db_server_settings or None)
    redis = aioredis.from_url(settings.redis_url)
    outbox_relay = OutboxRelay(pool, redis) if relay and settings.relay_enabled else None
    engine = create_engine(settings.database_url, pool_size=2)
    runtime = Runtime(settings, pool, redis, clock or clock_from_env(settings.clock_offset_file), outbox_relay,
                      engine, session_factory(engine))
    if outbox_relay is not None:
        outbox_relay.start()
        # streams are trimmed only past what every consumer group has finished with (or retention)
        own = streams_of(settings.service_name, settings.stream_shards)
        retention_ms = int(settings.stream_retention_hours * 3_600_000)
        runtime.every(60, lambda: trim_consumed(redis, own, retention_ms=retention_ms), name="stream-trim")
    runtime.sample(lambda: sample_outbox(pool), name="outbox")
    runtime.sample(sample_consumer_lag, name="consumer-lag")
    return runtime


def grpc_service(runtime: Runtime, register: Registrar) -> GrpcService:
    """A gRPC service over `runtime` that closes it on stop."""
    s = runtime.settings
    return GrpcService(s.service_name, s.grpc_address, register, on_stop=[runtime.close])


def service_names(*descriptors) -> list[str]:
    """Full names of the gRPC services in the given file descriptors (for health and reflection)."""
    return [svc.full_name for d in descriptors for svc in d.services_by_name.values()]


async def build_service(
    settings: ServiceSettings,
    *,
    servicer: Callable[[Runtime], object],
    add_to_server: Callable[[object, grpc.aio.Server], None],
    descriptor: FileDescriptor,
    clock: Clock | None = None,
    relay: bool = True,
    prepare: Callable[[Runtime], Awaitable[None]] | None = None,
) -> GrpcService:
    """The usual service: open the runtime, run `prepare`, serve `servicer(runtime)` (a generated
    `add_XxxServicer_to_server` as `add_to_server`) with health and reflection for `descriptor`."""
    runtime = await open_runtime(settings, clock=clock, relay=relay)
    if prepare is not None:
        await prepare(runtime)
    instance = servicer(runtime)

    def register(server: grpc.aio.Server) -> list[str]:
        add_to_server(instance, server)
        return service_names(descriptor)

    return grpc_service(runtime, register)
