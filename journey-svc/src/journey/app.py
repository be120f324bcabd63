"""Builds the running journey service: runtime (pool, bus, relay) and gRPC server.

The JourneyService contract is served with gRPC's default for RPCs whose behaviour lands with
the journey issue: UNIMPLEMENTED. Health, reflection, migrations and the bus are live.
"""

from __future__ import annotations

from pathlib import Path

from journey.settings import JourneySettings
from mcloud.journey.v1 import journey_pb2, journey_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.grpc_server import GrpcService
from mcloud_common.runtime import grpc_service, open_runtime, service_names

MIGRATIONS = Path(__file__).parent / "migrations"


async def build(settings: JourneySettings, *, clock: Clock | None = None, relay: bool = True) -> GrpcService:
    runtime = await open_runtime(settings, clock=clock, relay=relay)

    def register(server) -> list[str]:
        journey_pb2_grpc.add_JourneyServiceServicer_to_server(journey_pb2_grpc.JourneyServiceServicer(), server)
        return service_names(journey_pb2.DESCRIPTOR)

    return grpc_service(runtime, register)
