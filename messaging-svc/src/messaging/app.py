"""Builds the running messaging service: runtime (pool, bus, relay), background work (senders,
campaigns, the identity-events consumer) and the gRPC server."""

from __future__ import annotations

from pathlib import Path

from mcloud.identity.v1 import identity_pb2_grpc
from mcloud.messaging.v1 import messaging_pb2, messaging_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.grpc_client import make_channel
from mcloud_common.grpc_server import GrpcService
from mcloud_common.runtime import Runtime, build_service
from messaging.background import campaigns, gauges, identity_events, sender
from messaging.grpc_api.servicer import MessagingServicer
from messaging.settings import MessagingSettings

MIGRATIONS = Path(__file__).parent / "migrations"


async def build(settings: MessagingSettings, *, clock: Clock | None = None, relay: bool = True,
                jobs: bool = True) -> GrpcService:
    """The messaging service, not yet started; `jobs=False` leaves out the background work (senders,
    campaign runner, identity-events consumer), for tests that drive it by hand."""
    identity = identity_pb2_grpc.IdentityServiceStub(make_channel(settings.identity_target))

    async def prepare(runtime: Runtime) -> None:
        if jobs:
            await sender.install(runtime, settings, identity=identity)
            await campaigns.install(runtime, settings, identity=identity)
            await identity_events.install(runtime, settings)
            gauges.install(runtime)

    return await build_service(
        settings,
        servicer=lambda rt: MessagingServicer(pool=rt.pool, clock=rt.clock, redis=rt.redis, settings=settings,
                                              identity=identity),
        add_to_server=messaging_pb2_grpc.add_MessagingServiceServicer_to_server,
        descriptor=messaging_pb2.DESCRIPTOR, clock=clock, relay=relay, prepare=prepare,
    )
