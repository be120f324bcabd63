"""Builds the running recommend service: runtime (pool, bus, relay) and gRPC server.

The RecommendService contract is served with gRPC's default for RPCs whose behaviour lands with
the recommend issue: UNIMPLEMENTED. Health, reflection, migrations and the bus are live.
"""

from __future__ import annotations

from pathlib import Path

from mcloud.recommend.v1 import recommend_pb2, recommend_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.grpc_server import GrpcService
from mcloud_common.runtime import grpc_service, open_runtime, service_names
from recommend.settings import RecommendSettings

MIGRATIONS = Path(__file__).parent / "migrations"


async def build(settings: RecommendSettings, *, clock: Clock | None = None, relay: bool = True) -> GrpcService:
    runtime = await open_runtime(settings, clock=clock, relay=relay)

    def register(server) -> list[str]:
        recommend_pb2_grpc.add_RecommendServiceServicer_to_server(recommend_pb2_grpc.RecommendServiceServicer(), server)
        return service_names(recommend_pb2.DESCRIPTOR)

    return grpc_service(runtime, register)
