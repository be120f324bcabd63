"""Builds the running loyalty service: runtime (pool, bus, relay) and gRPC server.

The LoyaltyService contract is registered with gRPC's generated base servicer, so its RPCs answer
UNIMPLEMENTED until the loyalty issue (#4) lands their behaviour; health, reflection, migrations and
the bus are live.
"""

from __future__ import annotations

from pathlib import Path

from loyalty.settings import LoyaltySettings
from mcloud.loyalty.v1 import loyalty_pb2, loyalty_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.grpc_server import GrpcService
from mcloud_common.runtime import build_service

MIGRATIONS = Path(__file__).parent / "migrations"


async def build(settings: LoyaltySettings, *, clock: Clock | None = None, relay: bool = True) -> GrpcService:
    return await build_service(
        settings, servicer=lambda _runtime: loyalty_pb2_grpc.LoyaltyServiceServicer(),
        add_to_server=loyalty_pb2_grpc.add_LoyaltyServiceServicer_to_server, descriptor=loyalty_pb2.DESCRIPTOR,
        clock=clock, relay=relay,
    )
