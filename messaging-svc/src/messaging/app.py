"""Builds the running messaging service: runtime (pool, bus, relay) and gRPC server.

The MessagingService contract is registered with gRPC's generated base servicer, so its RPCs answer
UNIMPLEMENTED until the messaging issue (#7) lands their behaviour; health, reflection, migrations and
the bus are live.
"""

from __future__ import annotations

from pathlib import Path

from mcloud.messaging.v1 import messaging_pb2, messaging_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.grpc_server import GrpcService
from mcloud_common.runtime import build_service
from messaging.settings import MessagingSettings

MIGRATIONS = Path(__file__).parent / "migrations"


async def build(settings: MessagingSettings, *, clock: Clock | None = None, relay: bool = True) -> GrpcService:
    return await build_service(
        settings, servicer=lambda _runtime: messaging_pb2_grpc.MessagingServiceServicer(),
        add_to_server=messaging_pb2_grpc.add_MessagingServiceServicer_to_server, descriptor=messaging_pb2.DESCRIPTOR,
        clock=clock, relay=relay,
    )
