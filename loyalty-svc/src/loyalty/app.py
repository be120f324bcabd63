"""Builds the running loyalty service: runtime (pool, bus, relay), background jobs and gRPC server."""

from __future__ import annotations

from pathlib import Path

from loyalty.background import consumer as identity_consumer
from loyalty.background import coupons as coupon_jobs
from loyalty.background import ledger as ledger_jobs
from loyalty.grpc_api.servicer import LoyaltyServicer
from loyalty.settings import LoyaltySettings
from mcloud.loyalty.v1 import loyalty_pb2, loyalty_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.grpc_server import GrpcService
from mcloud_common.runtime import Runtime, build_service

MIGRATIONS = Path(__file__).parent / "migrations"


def _prepare_with(settings: LoyaltySettings, jobs: bool):
    async def prepare(runtime: Runtime) -> None:
        if jobs:
            await ledger_jobs.install(runtime, settings)
            await coupon_jobs.install(runtime, settings)
            await identity_consumer.install(runtime, settings)

    return prepare


async def build(settings: LoyaltySettings, *, clock: Clock | None = None, relay: bool = True,
                jobs: bool = True) -> GrpcService:
    """The loyalty service, not yet started. `jobs=False` leaves out the background work (expiry,
    reminders, tier reviews, coupon jobs, the identity-events consumer), for tests that drive it by hand."""
    return await build_service(
        settings,
        servicer=lambda rt: LoyaltyServicer(rt.pool, rt.clock, settings.stream_shards, rt.redis),
        add_to_server=loyalty_pb2_grpc.add_LoyaltyServiceServicer_to_server,
        descriptor=loyalty_pb2.DESCRIPTOR,
        clock=clock, relay=relay, prepare=_prepare_with(settings, jobs),
    )
