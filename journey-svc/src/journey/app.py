"""Builds the running journey service: runtime (pool, bus, relay), background work (the executor, the
events consumer, scheduled entries) and the gRPC server."""

from __future__ import annotations

from pathlib import Path

from journey.background import events, gauges, schedule, worker
from journey.grpc_api.servicer import JourneyServicer
from journey.settings import JourneySettings
from mcloud.journey.v1 import journey_pb2, journey_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.grpc_server import GrpcService
from mcloud_common.runtime import Runtime, build_service

MIGRATIONS = Path(__file__).parent / "migrations"


def _prepare_with(settings: JourneySettings, jobs: bool):
    async def prepare(runtime: Runtime) -> None:
        if jobs:
            await worker.install(runtime, settings)
            await events.install(runtime, settings)
            await schedule.install(runtime, settings, worker.Effects.from_settings(settings))
            gauges.install(runtime)

    return prepare


async def build(settings: JourneySettings, *, clock: Clock | None = None, relay: bool = True,
                jobs: bool = True) -> GrpcService:
    """The journey service, not yet started; `jobs=False` leaves out the executor (tests drive it)."""
    return await build_service(
        settings, servicer=lambda rt: JourneyServicer(rt.pool, rt.clock, settings.stream_shards, rt.redis,
                                                      effects=worker.Effects.from_settings(settings)),
        add_to_server=journey_pb2_grpc.add_JourneyServiceServicer_to_server, descriptor=journey_pb2.DESCRIPTOR,
        clock=clock, relay=relay, prepare=_prepare_with(settings, jobs),
    )
