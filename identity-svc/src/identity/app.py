"""Builds the running identity service: runtime (pool, bus, relay) and gRPC server."""

from __future__ import annotations

from pathlib import Path

from identity.grpc_api.servicer import IdentityServicer
from identity.settings import IdentitySettings
from mcloud.identity.v1 import identity_pb2, identity_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.grpc_server import GrpcService
from mcloud_common.runtime import grpc_service, open_runtime, service_names

MIGRATIONS = Path(__file__).parent / "migrations"


async def build(settings: IdentitySettings, *, clock: Clock | None = None, relay: bool = True) -> GrpcService:
    """The identity service, not yet started."""
    runtime = await open_runtime(settings, clock=clock, relay=relay)
    await runtime.pool.execute("SELECT ensure_event_partitions(2)")
    servicer = IdentityServicer(runtime.pool, runtime.clock, settings.stream_shards)

    def register(server) -> list[str]:
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)
        return service_names(identity_pb2.DESCRIPTOR)

    return grpc_service(runtime, register)
