"""Builds the running recommend service: runtime (pool, bus, relay) and gRPC server.

The RecommendService contract is registered with gRPC's generated base servicer, so its RPCs answer
UNIMPLEMENTED until the recommend issue (#6) lands their behaviour; health, reflection, migrations and
the bus are live.
"""

from __future__ import annotations

from pathlib import Path

from mcloud.recommend.v1 import recommend_pb2, recommend_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.grpc_server import GrpcService
from mcloud_common.runtime import build_service
from recommend.settings import RecommendSettings

MIGRATIONS = Path(__file__).parent / "migrations"


async def build(settings: RecommendSettings, *, clock: Clock | None = None, relay: bool = True) -> GrpcService:
    return await build_service(
        settings, servicer=lambda _runtime: recommend_pb2_grpc.RecommendServiceServicer(),
        add_to_server=recommend_pb2_grpc.add_RecommendServiceServicer_to_server, descriptor=recommend_pb2.DESCRIPTOR,
        clock=clock, relay=relay,
    )
