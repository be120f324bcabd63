"""The message.* events messaging publishes and the one way to enqueue them (outbox, in the caller's
transaction). Every payload starts with a MessageRef built from the message row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from google.protobuf.message import Message

from mcloud.events.v1 import event_pb2
from mcloud.events.v1 import messaging_events_pb2 as ev
from mcloud_common.bus import enqueue
from mcloud_common.bus.envelope import envelope as _envelope

PRODUCER = "messaging"


def envelope(tenant_id: str, type_: str, profile_id: str, payload: Message, *, at: datetime | None = None
             ) -> event_pb2.Event:
    """A messaging event of `type_` about `profile_id`, `payload` packed; `at` defaults to now."""
    return _envelope(PRODUCER, tenant_id, type_, profile_id, payload, at=at)


def message_ref(row: Mapping[str, Any]) -> ev.MessageRef:
    """The MessageRef of a `messages` row (any mapping with its column names)."""
    return ev.MessageRef(
        message_id=str(row["id"]), profile_id=str(row["profile_id"]),
        channel=row.get("channel") or row.get("requested_channel") or "", template_id=str(row["template_id"]),
        template_version=row.get("template_version") or 0, transactional=bool(row.get("transactional")),
        journey_id=row.get("journey_id") or "", journey_version=row.get("journey_version") or 0,
        enrollment_id=row.get("enrollment_id") or "", step_id=row.get("step_id") or "",
        campaign_id=str(row["campaign_id"]) if row.get("campaign_id") else "")


async def publish(conn: asyncpg.Connection, events: Sequence[event_pb2.Event], shards: int) -> None:
    """Enqueue `events` in the outbox on `conn` (published when the caller's transaction commits)."""
    if events:
        await enqueue(conn, events, producer=PRODUCER, shards=shards)
