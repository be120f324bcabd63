"""Scheduled entries: `{"type": "schedule", "every": "once" | "daily" | "weekly", "at": "HH:MM",
"weekday": 1-7, "date": "YYYY-MM-DD", "segment_id": ...}`, at that local time in each person's time
zone.

An occurrence (a local date) is fanned out once, when it first begins anywhere on earth (UTC+14): the
segment's members, read page by page from identity, are enrolled with the entry key
`schedule:<date>`; each enrollment starts at a gate that waits until the local time in that
person's time zone (trait `timezone`), then runs the journey. `schedule_runs` records each occurrence
so that it is fanned out once, whichever replica gets there first.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import asyncpg
import orjson

from journey.background.worker import Effects
from journey.repo import enrollments as repo
from journey.settings import JourneySettings
from mcloud.identity.v1 import identity_pb2
from mcloud.journey.v1 import journey_pb2 as pb
from mcloud_common.clock import Clock
from mcloud_common.errors import DomainError
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.logs import get_logger
from mcloud_common.runtime import Runtime

log = get_logger(__name__)

EARLIEST = timedelta(hours=14)  # UTC+14: where a local time happens first
PAGE = 1000

_SCHEDULED = """
    SELECT j.tenant_id, j.id, j.status, j.published_version, v.definition, v.published_at
    FROM journeys j JOIN journey_versions v
      ON v.tenant_id = j.tenant_id AND v.journey_id = j.id AND v.version = j.published_version
    WHERE j.status = 'active' AND v.entry_type = 'schedule'
"""


def occurrences(entry: dict, published_at: datetime, now: datetime) -> list[date]:
    """Local dates of the schedule that have begun somewhere by `now` and not before publishing."""
    at = time.fromisoformat(entry.get("at", "00:00"))

    def begun(day: date) -> bool:
        return datetime.combine(day, at, tzinfo=now.tzinfo) - EARLIEST <= now

    def after_publish(day: date) -> bool:  # the first occurrence is the first to begin after publishing
        return datetime.combine(day, at, tzinfo=now.tzinfo) - EARLIEST >= published_at

    every = entry.get("every", "once")
    if every == "once":
        day = date.fromisoformat(entry["date"])
        return [day] if begun(day) and after_publish(day) else []
    today = now.date()
    days = [today + timedelta(days=d) for d in (-1, 0, 1)]
    if every == "weekly":
        days = [d for d in days if d.isoweekday() == int(entry.get("weekday", 1))]
    return [d for d in days if begun(d) and after_publish(d)]


async def fan_out(pool: asyncpg.Pool, effects: Effects, clock: Clock, shards: int) -> int:
    """Enrol the members of every due occurrence of every scheduled journey; the number enrolled."""
    now = clock.now()
    enrolled = 0
    for j in await pool.fetch(_SCHEDULED):
        definition = orjson.loads(j["definition"])
        entry = definition["entry"]
        for day in occurrences(entry, j["published_at"], now):
            claimed = await pool.fetchval(
                "INSERT INTO schedule_runs (tenant_id, journey_id, occurrence, version, started_at) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
                j["tenant_id"], j["id"], day, j["published_version"], now)
            if not claimed:
                continue
            n = await _enrol_segment(pool, effects, str(j["tenant_id"]), j, definition, entry, day, now, shards)
            await pool.execute("UPDATE schedule_runs SET entered = $4, finished_at = $5 WHERE tenant_id = $1 "
                               "AND journey_id = $2 AND occurrence = $3", j["tenant_id"], j["id"], day, n, now)
            log.info("scheduled journey fanned out", journey_id=str(j["id"]), occurrence=str(day), enrolled=n)
            enrolled += n
    return enrolled


async def _enrol_segment(pool: asyncpg.Pool, effects: Effects, tenant: str, journey: asyncpg.Record,
                         definition: dict, entry: dict, day: date, now: datetime, shards: int) -> int:
    md, token, n = tenant_metadata(tenant), "", 0
    local_at = f"{day.isoformat()}T{entry.get('at', '00:00')}"
    while True:
        page = await effects.identity.ListSegmentMembers(identity_pb2.ListSegmentMembersRequest(
            segment_id=entry["segment_id"], page_size=PAGE, page_token=token), metadata=md)
        async with pool.acquire() as conn, conn.transaction():
            for profile in page.profile_ids:
                try:
                    outcome, _ = await repo.enroll(conn, tenant, journey, definition, repo.Entry(
                        profile, f"schedule:{day.isoformat()}", {"_local_at": local_at}, "", "schedule", gate=True),
                        now, shards)
                except DomainError as exc:
                    log.info("scheduled entry refused", journey_id=str(journey["id"]), code=exc.code)
                    continue
                n += outcome == pb.ENROLL_OUTCOME_ENROLLED
        token = page.next_page_token
        if not token:
            return n


async def install(runtime: Runtime, settings: JourneySettings, effects: Effects) -> None:
    runtime.every(settings.schedule_interval_seconds,
                  lambda: fan_out(runtime.pool, effects, runtime.clock, settings.stream_shards),
                  name="journey-schedules")
