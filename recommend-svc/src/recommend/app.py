"""Builds the running recommend service: runtime (pool, bus, relay), serving state, trainer, background
work (the events consumer, served-list flushes, the intent sweep, scheduled training) and gRPC."""

from __future__ import annotations

from pathlib import Path

from threadpoolctl import threadpool_limits

from mcloud.identity.v1 import identity_pb2_grpc
from mcloud.recommend.v1 import recommend_pb2, recommend_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.grpc_client import make_channel
from mcloud_common.grpc_server import GrpcService
from mcloud_common.runtime import Runtime, build_service
from recommend.background import consumer
from recommend.background import jobs as _jobs
from recommend.grpc_api.servicer import RecommendServicer
from recommend.serving import Serving
from recommend.settings import RecommendSettings
from recommend.training import Trainer

MIGRATIONS = Path(__file__).parent / "migrations"


async def build(settings: RecommendSettings, *, clock: Clock | None = None, relay: bool = True,
                jobs: bool = True) -> GrpcService:
    """The recommend service, not yet started; `jobs=False` leaves out the background work (consumer,
    intent sweep, scheduled training; served lists are still flushed), for tests that drive it by hand."""
    # one BLAS thread: per-request products are small, and an idle OpenBLAS worker spins on a core after
    # each one (measured: ~1 core-second per second burnt at 20k items); training parallelises itself
    threadpool_limits(1, user_api="blas")
    identity = identity_pb2_grpc.IdentityServiceStub(make_channel(settings.identity_target))
    parts: dict = {}

    async def prepare(runtime: Runtime) -> None:
        serving = Serving(runtime.pool, runtime.redis, runtime.clock, settings, identity)
        trainer = Trainer(runtime.pool, runtime.clock, settings, on_model=serving.states.reload)
        parts.update(serving=serving, trainer=trainer)
        runtime.every(settings.served_flush_seconds, serving.flush_served, name="recommend-served")
        if jobs:
            await consumer.install(runtime, serving, settings.stream_shards)
            _jobs.install(runtime, serving, trainer, settings)

    return await build_service(
        settings,
        servicer=lambda rt: RecommendServicer(pool=rt.pool, clock=rt.clock, serving=parts["serving"],
                                              trainer=parts["trainer"]),
        add_to_server=recommend_pb2_grpc.add_RecommendServiceServicer_to_server,
        descriptor=recommend_pb2.DESCRIPTOR, clock=clock, relay=relay, prepare=prepare,
    )
