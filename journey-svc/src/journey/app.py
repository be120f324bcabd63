"""Builds the running journey service: runtime (pool, bus, relay) and gRPC server.

The JourneyService contract is registered with gRPC's generated base servicer, so its RPCs answer
UNIMPLEMENTED until the journey issue (#5) lands their behaviour; health, reflection, migrations and
the bus are live.
"""

from __future__ import annotations

from pathlib import Path

from journey.settings import JourneySettings
from mcloud.journey.v1 import journey_pb2, journey_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.grpc_server import GrpcService
from mcloud_common.runtime import build_service

MIGRATIONS = Path(__file__).parent / "migrations"


async def build(settings: JourneySettings, *, clock: Clock | None = None, relay: bool = True) -> GrpcService:
    return await build_service(
        settings, servicer=lambda _runtime: journey_pb2_grpc.JourneyServiceServicer(),
        add_to_server=journey_pb2_grpc.add_JourneyServiceServicer_to_server, descriptor=journey_pb2.DESCRIPTOR,
        clock=clock, relay=relay,
    )
