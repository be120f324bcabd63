"""The identity process is SIGKILLed after it committed events and before they were published:
a restarted process publishes them (transactional outbox), nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from identity.app import MIGRATIONS
from mcloud.identity.v1 import identity_pb2 as pb
from mcloud.identity.v1 import identity_pb2_grpc
from mcloud_common.embedded import free_port
from mcloud_common.grpc_client import make_channel, tenant_metadata
from mcloud_common.testing.services import wait_until

from .test_ingest import stream_events, track


def _start(db: str, redis_url: str, port: int, *, relay: bool) -> subprocess.Popen:
    env = {**os.environ, "IDENTITY_DATABASE_URL": db, "IDENTITY_REDIS_URL": redis_url,
           "IDENTITY_GRPC_PORT": str(port), "IDENTITY_RELAY_ENABLED": str(relay).lower(),
           "IDENTITY_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "identity", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _serving(channel: grpc.aio.Channel) -> bool:
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
    except grpc.aio.AioRpcError:
        return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_events_committed_by_a_killed_process_are_published_by_its_restart(make_database, redis_url, redis):
    db = await make_database("identity_kill", migrations=MIGRATIONS)
    port = free_port()
    tenant = str(uuid.uuid4())
    # First life: the relay is held off so the kill lands between commit and publish, every time.
    process = _start(db, redis_url, port, relay=False)
    try:
        async with make_channel(f"127.0.0.1:{port}") as channel:
            await wait_until(lambda: _serving(channel), timeout=30, message="identity serving")
            reply = await identity_pb2_grpc.IdentityServiceStub(channel).IngestEvents(
                pb.IngestEventsRequest(events=[track("k1", anonymous_id="killed"), track("k2", anonymous_id="killed")]),
                metadata=tenant_metadata(tenant))
        assert reply.accepted == 2
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        profile = reply.profile_ids[0]
        assert await stream_events(redis, profile) == []
        # Second life, relay on: what the first committed goes out.
        process = _start(db, redis_url, port, relay=True)
        published = await wait_until(lambda: _two(redis, profile), timeout=30, message="events published")
        assert [e.message_id for e in published] == ["k1", "k2"]
    finally:
        process.kill()
        process.wait(10)


async def _two(redis, profile):
    events = await stream_events(redis, profile)
    return events if len(events) >= 2 else None
