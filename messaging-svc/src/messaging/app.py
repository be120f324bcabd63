"""Builds the running messaging service: runtime (pool, bus, relay) and gRPC server.

The MessagingService contract is served with gRPC's default for RPCs whose behaviour lands with
the messaging issue: UNIMPLEMENTED. Health, reflection, migrations and the bus are live.
"""

from __future__ import annotations

from pathlib import Path

from mcloud.messaging.v1 import messaging_pb2, messaging_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.grpc_server import GrpcService
from mcloud_common.runtime import grpc_service, open_runtime, service_names
from messaging.settings import MessagingSettings

MIGRATIONS = Path(__file__).parent / "migrations"


async def build(settings: MessagingSettings, *, clock: Clock | None = None, relay: bool = True) -> GrpcService:
    runtime = await open_runtime(settings, clock=clock, relay=relay)

    def register(server) -> list[str]:
        messaging_pb2_grpc.add_MessagingServiceServicer_to_server(messaging_pb2_grpc.MessagingServiceServicer(), server)
        return service_names(messaging_pb2.DESCRIPTOR)

    return grpc_service(runtime, register)
