"""Builds the running identity service: runtime (pool, bus, relay) and gRPC server."""

from __future__ import annotations

from pathlib import Path

from identity.background import profiles as profile_jobs
from identity.background import segments as segment_jobs
from identity.grpc_api.servicer import IdentityServicer
from identity.settings import IdentitySettings
from mcloud.identity.v1 import identity_pb2, identity_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.grpc_server import GrpcService
from mcloud_common.runtime import Runtime, build_service

MIGRATIONS = Path(__file__).parent / "migrations"


def _prepare_with(settings: IdentitySettings, jobs: bool):
    async def prepare(runtime: Runtime) -> None:
        await _prepare(runtime)
        if jobs:
            await segment_jobs.install(runtime, settings)
            await profile_jobs.install(runtime, settings)

    return prepare


async def _prepare(runtime: Runtime) -> None:
    # This month's and the next two months' event partitions exist before anything is stored, and
    # keep existing as months pass (rows past the last partition would land in the default one).
    await runtime.pool.execute("SELECT ensure_event_partitions(2)")
    runtime.every(6 * 3600, lambda: runtime.pool.execute("SELECT ensure_event_partitions(2)"),
                  name="event-partitions")


async def build(settings: IdentitySettings, *, clock: Clock | None = None, relay: bool = True,
                jobs: bool = True) -> GrpcService:
    """The identity service, not yet started. `jobs=False` leaves out the background workers (segment
    evaluation, lifecycle pass, consumers), for tests that drive them by hand."""
    return await build_service(
        settings,
        servicer=lambda rt: IdentityServicer(rt.pool, rt.clock, settings.stream_shards, rt.redis),
        add_to_server=identity_pb2_grpc.add_IdentityServiceServicer_to_server,
        descriptor=identity_pb2.DESCRIPTOR,
        clock=clock, relay=relay, prepare=_prepare_with(settings, jobs),
    )
