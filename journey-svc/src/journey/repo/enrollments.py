"""Enrollments: entry under the journey's re-entry rule and holdout, the durable timer (`due_at`)
workers claim, saving where a run left an enrollment, the per-person trace and the counts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import orjson

from journey.domain import engine
from journey.domain.definition import parse_duration
from journey.repo import events as journey_events
from mcloud.journey.v1 import journey_pb2 as pb
from mcloud_common import paging
from mcloud_common.errors import FailedPrecondition, InvalidArgument, NotFound
from mcloud_common.ids import new_id, parse_uuid
from mcloud_common.telemetry import current_traceparent
from mcloud_common.timestamps import set_timestamp

STATUS = {"active": pb.ENROLLMENT_STATUS_ACTIVE, "completed": pb.ENROLLMENT_STATUS_COMPLETED,
          "exited": pb.ENROLLMENT_STATUS_EXITED}
STATUS_NAMES = {v: k for k, v in STATUS.items()}

_COLUMNS = """id, journey_id, version, profile_id, status, holdout, entry_key, idempotency_key, trigger, context,
    step_id, visits, due_at, waiting_until, waiting_for, arrived, attempts, last_error, converted_at, exit_reason,
    entered_at, updated_at, ended_at"""


def message(row: asyncpg.Record) -> pb.Enrollment:
    e = pb.Enrollment(id=str(row["id"]), journey_id=str(row["journey_id"]), journey_version=row["version"],
                      profile_id=str(row["profile_id"]), status=STATUS[row["status"]], holdout=row["holdout"],
                      entry_key=row["entry_key"], trigger=row["trigger"],
                      context_json=orjson.dumps(row["context"]).decode(), current_step_id=row["step_id"],
                      waiting_for_event=row["waiting_for"], converted=row["converted_at"] is not None,
                      exit_reason=row["exit_reason"])
    for name, column in (("waiting_until", "waiting_until"), ("converted_at", "converted_at"),
                         ("entered_at", "entered_at"), ("updated_at", "updated_at"), ("ended_at", "ended_at")):
        if row[column] is not None:
            set_timestamp(getattr(e, name), row[column])
    return e


@dataclass
class Entry:
    profile_id: str
    entry_key: str = ""
    context: dict | None = None
    idempotency_key: str = ""
    trigger: str = "api"
    # scheduled entries start at a gate that waits for the occurrence's local time
    gate: bool = False


async def enroll(conn: asyncpg.Connection, tenant: str, journey: asyncpg.Record, definition: dict, entry: Entry,
                 now: datetime, shards: int = 4, trigger_event_id: str = "") -> tuple[int, asyncpg.Record | None]:
    """(EnrollOutcome, enrollment) for one entry into the journey's published version."""
    if parse_uuid(entry.profile_id) is None:
        raise InvalidArgument("profile_id must be a UUID", code="invalid_profile_id", field="profile_id")
    if journey["status"] != "active":
        raise FailedPrecondition(f"the journey is {journey['status']}", code="journey_not_active")
    jid = journey["id"]
    if entry.idempotency_key:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM enrollments WHERE tenant_id = $1 AND journey_id = $2 "
                                  "AND idempotency_key = $3", tenant, jid, entry.idempotency_key)
        if row is not None:
            return pb.ENROLL_OUTCOME_DUPLICATE, row
    if entry.entry_key:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM enrollments WHERE tenant_id = $1 AND journey_id = $2 "
                                  "AND profile_id = $3 AND entry_key = $4", tenant, jid, entry.profile_id,
                                  entry.entry_key)
        if row is not None:
            return pb.ENROLL_OUTCOME_DUPLICATE, row
    else:
        last = await conn.fetchrow(f"SELECT {_COLUMNS} FROM enrollments WHERE tenant_id = $1 AND journey_id = $2 "
                                   "AND profile_id = $3 AND entry_key = '' ORDER BY entered_at DESC LIMIT 1",
                                   tenant, jid, entry.profile_id)
        if last is not None and _blocked(definition.get("reentry") or {}, last, now):
            return pb.ENROLL_OUTCOME_REENTRY_BLOCKED, last
    holdout = engine.holdout_draw(f"{jid}:{entry.profile_id}:{entry.entry_key}") < definition.get("holdout_percent", 0)
    row = await conn.fetchrow(
        f"""
        INSERT INTO enrollments (tenant_id, id, journey_id, version, profile_id, holdout, entry_key, idempotency_key,
                                 trigger, context, step_id, due_at, entered_at, updated_at, traceparent)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $12, $13)
        ON CONFLICT DO NOTHING
        RETURNING {_COLUMNS}
        """, tenant, new_id(), jid, journey["published_version"], entry.profile_id, holdout, entry.entry_key,
        entry.idempotency_key, entry.trigger, entry.context or {}, "" if entry.gate else definition["start"], now,
        current_traceparent())
    if row is None:  # a concurrent twin won the race
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM enrollments WHERE tenant_id = $1 AND journey_id = $2 "
                                  "AND profile_id = $3 AND (status = 'active' OR entry_key = $4 "
                                  "OR (idempotency_key <> '' AND idempotency_key = $5)) "
                                  "ORDER BY entered_at DESC LIMIT 1", tenant, jid, entry.profile_id, entry.entry_key,
                                  entry.idempotency_key)
        return pb.ENROLL_OUTCOME_DUPLICATE, row
    await log(conn, tenant, [(row["id"], jid, row["version"], definition["start"], "entry", "entered", holdout)], now)
    await journey_events.entered(conn, tenant, row, now, shards, trigger_event_id)
    return pb.ENROLL_OUTCOME_ENROLLED, row


def _blocked(reentry: dict, last: asyncpg.Record, now: datetime) -> bool:
    mode = reentry.get("mode", "never")
    if mode == "never":
        return True
    if last["status"] == "active":
        return True
    if mode == "cooldown":
        return last["entered_at"] + parse_duration(reentry.get("cooldown", "PT0S")) > now
    return False


async def log(conn: asyncpg.Connection, tenant: str, rows: list[tuple], now: datetime) -> None:
    """Step log rows: (enrollment_id, journey_id, version, step_id, step_type, outcome, holdout)."""
    if rows:
        cols = [list(c) for c in zip(*rows, strict=True)]
        await conn.execute(
            "INSERT INTO step_log (tenant_id, enrollment_id, journey_id, version, step_id, step_type, outcome, "
            "holdout, at) SELECT $1, * , $9 FROM unnest($2::uuid[], $3::uuid[], $4::int[], $5::text[], $6::text[], "
            "$7::text[], $8::boolean[])", tenant, *cols, now)


_CLAIM = """
    WITH due AS (
        SELECT tenant_id, id, due_at FROM enrollments
        WHERE status = 'active' AND due_at <= $1
        ORDER BY due_at LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
    UPDATE enrollments e SET due_at = $1 + make_interval(secs => $3), attempts = e.attempts
    FROM due WHERE e.tenant_id = due.tenant_id AND e.id = due.id
    RETURNING e.tenant_id, e.*, due.due_at AS was_due
"""


async def claim(conn: asyncpg.Connection, now: datetime, limit: int, lease_seconds: float) -> list[asyncpg.Record]:
    """Take up to `limit` due enrollments and lease them (they come due again if not saved in time); each
    row's `was_due` is when it came due (its `due_at` is now the lease's end)."""
    return await conn.fetch(_CLAIM, now, limit, lease_seconds)


async def get(conn: asyncpg.Connection, tenant: str, enrollment_id: str) -> asyncpg.Record:
    eid = parse_uuid(enrollment_id)
    if eid is None:
        raise InvalidArgument("enrollment_id must be a UUID", code="invalid_enrollment_id", field="enrollment_id")
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM enrollments WHERE tenant_id = $1 AND id = $2", tenant, eid)
    if row is None:
        raise NotFound(f"enrollment {enrollment_id} not found", code="enrollment_not_found")
    return row




async def page(conn: asyncpg.Connection, tenant: str, request: pb.ListEnrollmentsRequest
               ) -> tuple[list[pb.Enrollment], str]:
    jid = parse_uuid(request.journey_id) if request.journey_id else None
    pid = parse_uuid(request.profile_id) if request.profile_id else None
    if (request.journey_id and jid is None) or (request.profile_id and pid is None):
        raise InvalidArgument("journey_id and profile_id must be UUIDs", code="invalid_id", field="journey_id")
    if jid is None and pid is None:
        raise InvalidArgument("journey_id or profile_id is required", code="missing_filter", field="journey_id")
    size = paging.page_size(request.page_size)
    at, last = paging.after(request.page_token)
    statuses = [STATUS_NAMES[s] for s in request.statuses if s in STATUS_NAMES]
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM enrollments
        WHERE tenant_id = $1 AND ($2::uuid IS NULL OR journey_id = $2) AND ($3::uuid IS NULL OR profile_id = $3)
          AND (cardinality($4::text[]) = 0 OR status = ANY($4::text[]))
          AND ($5::timestamptz IS NULL OR (entered_at, id) < ($5, $6))
        ORDER BY entered_at DESC, id DESC LIMIT $7
        """, tenant, jid, pid, statuses, at, last, size + 1)
    rows, token = paging.cut(rows, size, "entered_at")
    return [message(r) for r in rows], token


async def trace(conn: asyncpg.Connection, tenant: str, enrollment_id: uuid.UUID) -> list[pb.TraceStep]:
    rows = await conn.fetch("SELECT step_id, step_type, outcome, at FROM step_log WHERE tenant_id = $1 "
                            "AND enrollment_id = $2 ORDER BY id", tenant, enrollment_id)
    out = []
    for r in rows:
        step = pb.TraceStep(step_id=r["step_id"], step_type=r["step_type"], outcome=r["outcome"])
        set_timestamp(step.at, r["at"])
        out.append(step)
    return out


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(2 ** attempts * 5, 3600))


_TOTALS = """
    SELECT holdout, count(*) AS entered, count(*) FILTER (WHERE status = 'active') AS active,
           count(*) FILTER (WHERE status = 'completed') AS completed,
           count(*) FILTER (WHERE status = 'exited') AS exited,
           count(*) FILTER (WHERE converted_at IS NOT NULL) AS converted
    FROM enrollments
    WHERE tenant_id = $1 AND journey_id = $2 AND ($3 = 0 OR version = $3)
      AND ($4::timestamptz IS NULL OR entered_at >= $4) AND ($5::timestamptz IS NULL OR entered_at < $5)
    GROUP BY holdout
"""
_STEPS = """
    SELECT l.step_id, l.step_type, l.outcome, count(*) AS n
    FROM step_log l JOIN enrollments e ON e.tenant_id = l.tenant_id AND e.id = l.enrollment_id
    WHERE l.tenant_id = $1 AND l.journey_id = $2 AND ($3 = 0 OR l.version = $3) AND NOT l.holdout
      AND ($4::timestamptz IS NULL OR e.entered_at >= $4) AND ($5::timestamptz IS NULL OR e.entered_at < $5)
    GROUP BY 1, 2, 3
"""
_WAITING = """
    SELECT step_id, count(*) AS n FROM enrollments
    WHERE tenant_id = $1 AND journey_id = $2 AND ($3 = 0 OR version = $3) AND status = 'active' AND NOT holdout
      AND ($4::timestamptz IS NULL OR entered_at >= $4) AND ($5::timestamptz IS NULL OR entered_at < $5)
    GROUP BY 1
"""


async def stats(conn: asyncpg.Connection, tenant: str, journey: asyncpg.Record, version: int,
                start: datetime | None, end: datetime | None) -> pb.GetJourneyStatsResponse:
    """Counts of the treated group and the holdout, conversion and uplift, and per-step counts."""
    args = (tenant, journey["id"], version, start, end)
    out = pb.GetJourneyStatsResponse()
    for r in await conn.fetch(_TOTALS, *args):
        if r["holdout"]:
            out.holdout_entered, out.holdout_converted = r["entered"], r["converted"]
        else:
            out.entered, out.active, out.completed = r["entered"], r["active"], r["completed"]
            out.exited, out.converted = r["exited"], r["converted"]
    out.conversion_rate = out.converted / out.entered if out.entered else 0.0
    out.holdout_conversion_rate = out.holdout_converted / out.holdout_entered if out.holdout_entered else 0.0
    out.uplift = out.conversion_rate - out.holdout_conversion_rate
    steps: dict[str, pb.StepStats] = {}
    for r in await conn.fetch(_STEPS, *args):
        if r["step_type"] in ("entry", "goal", "exit") and r["outcome"] != "exit":
            continue  # entering the journey, conversions and early exits are not a step's own counts
        s = steps.setdefault(r["step_id"], pb.StepStats(step_id=r["step_id"], step_type=r["step_type"]))
        s.step_type = r["step_type"]
        s.completed += r["n"]
        s.outcomes.add(outcome=r["outcome"], count=r["n"])
    for r in await conn.fetch(_WAITING, *args):
        steps.setdefault(r["step_id"], pb.StepStats(step_id=r["step_id"])).active = r["n"]
    for s in steps.values():
        s.entered = s.completed + s.active
    out.steps.extend(steps.values())
    return out
