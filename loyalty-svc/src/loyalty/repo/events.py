"""Envelopes for the events loyalty publishes and the one way to enqueue them (outbox, in the
caller's transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
from google.protobuf.message import Message

from mcloud.events.v1 import event_pb2
from mcloud_common.bus import enqueue
from mcloud_common.bus.envelope import envelope as _envelope

PRODUCER = "loyalty"


def envelope(tenant_id: str, type_: str, profile_id: str, payload: Message, *, at: datetime | None = None
             ) -> event_pb2.Event:
    """A loyalty event of `type_` about `profile_id`, `payload` packed; `at` defaults to now."""
    return _envelope(PRODUCER, tenant_id, type_, profile_id, payload, at=at)


async def publish(conn: asyncpg.Connection, events: Sequence[event_pb2.Event], shards: int) -> None:
    """Enqueue `events` in the outbox on `conn` (published when the caller's transaction commits)."""
    await enqueue(conn, events, producer=PRODUCER, shards=shards)
