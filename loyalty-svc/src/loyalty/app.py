"""Builds the running loyalty service: runtime (pool, bus, relay) and gRPC server.

The LoyaltyService contract is served with gRPC's default for RPCs whose behaviour lands with
the loyalty issue: UNIMPLEMENTED. Health, reflection, migrations and the bus are live.
"""

from __future__ import annotations

from pathlib import Path

from loyalty.settings import LoyaltySettings
from mcloud.loyalty.v1 import loyalty_pb2, loyalty_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.grpc_server import GrpcService
from mcloud_common.runtime import grpc_service, open_runtime, service_names

MIGRATIONS = Path(__file__).parent / "migrations"


async def build(settings: LoyaltySettings, *, clock: Clock | None = None, relay: bool = True) -> GrpcService:
    runtime = await open_runtime(settings, clock=clock, relay=relay)

    def register(server) -> list[str]:
        loyalty_pb2_grpc.add_LoyaltyServiceServicer_to_server(loyalty_pb2_grpc.LoyaltyServiceServicer(), server)
        return service_names(loyalty_pb2.DESCRIPTOR)

    return grpc_service(runtime, register)
