"""The events journey publishes (journey.entered / exited / converted), enqueued in the outbox of
the transaction that made the change."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from mcloud.events.v1 import journey_events_pb2 as ev
from mcloud_common.bus import enqueue
from mcloud_common.bus.envelope import envelope
from mcloud_common.timestamps import set_timestamp

PRODUCER = "journey"


async def entered(conn: asyncpg.Connection, tenant: str, row: asyncpg.Record, now: datetime, shards: int,
                  trigger_event_id: str = "") -> None:
    payload = ev.JourneyEntered(journey_id=str(row["journey_id"]), journey_version=row["version"],
                                enrollment_id=str(row["id"]), profile_id=str(row["profile_id"]),
                                entry_key=row["entry_key"], trigger=row["trigger"], trigger_event_id=trigger_event_id,
                                holdout=row["holdout"])
    await enqueue(conn, [envelope(PRODUCER, tenant, "journey.entered", str(row["profile_id"]), payload, at=now)],
                  producer=PRODUCER, shards=shards)


def exited_event(tenant: str, row, reason: str, step_id: str, now: datetime):
    payload = ev.JourneyExited(journey_id=str(row["journey_id"]), journey_version=row["version"],
                               enrollment_id=str(row["id"]), profile_id=str(row["profile_id"]), reason=reason,
                               step_id=step_id, holdout=row["holdout"])
    return envelope(PRODUCER, tenant, "journey.exited", str(row["profile_id"]), payload, at=now)


async def converted(conn: asyncpg.Connection, tenant: str, row, now: datetime, shards: int, *,
                    trigger_event_id: str, value_minor: int = 0, currency: str = "") -> None:
    payload = ev.JourneyConverted(journey_id=str(row["journey_id"]), journey_version=row["version"],
                                  enrollment_id=str(row["id"]), profile_id=str(row["profile_id"]), goal_id="goal",
                                  holdout=row["holdout"], trigger_event_id=trigger_event_id,
                                  value_minor=value_minor, currency=currency)
    set_timestamp(payload.entered_at, row["entered_at"])
    await enqueue(conn, [envelope(PRODUCER, tenant, "journey.converted", str(row["profile_id"]), payload, at=now)],
                  producer=PRODUCER, shards=shards)
