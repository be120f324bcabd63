"""The events recommend publishes (recommendation.served / .clicked, intent.locked), through the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
from google.protobuf.message import Message

from mcloud.events.v1 import event_pb2
from mcloud_common.bus import enqueue
from mcloud_common.bus.envelope import envelope as _envelope

PRODUCER = "recommend"
ANON = "anon:"


def envelope(tenant_id: str, type_: str, person: str, payload: Message, *, at: datetime | None = None
             ) -> event_pb2.Event:
    """A recommend event about `person` (a profile id, or anon:<id> which leaves profile_id empty)."""
    profile_id, anonymous_id = split_person(person)
    ev = _envelope(PRODUCER, tenant_id, type_, profile_id, payload, at=at)
    ev.anonymous_id = anonymous_id
    return ev


async def publish(conn: asyncpg.Connection | asyncpg.Pool, events: Sequence[event_pb2.Event], shards: int) -> None:
    if events:
        await enqueue(conn, events, producer=PRODUCER, shards=shards)


def split_person(person: str) -> tuple[str, str]:
    """(profile_id, anonymous_id) of a person key."""
    return ("", person[len(ANON):]) if person.startswith(ANON) else (person, "")
