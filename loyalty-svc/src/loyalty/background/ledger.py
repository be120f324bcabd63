"""The ledger's scheduled work, each job a plain function of (pool, clock, shards) that tests call
with a ManualClock, safe to run twice or on two replicas at once:

- expire_due: lots whose expires_at has come lose what is left of them (one EXPIRY entry per member
  and run, points.expired). Each member is changed under its row lock like every other balance
  change, and an expired lot has nothing left, so points never expire twice.
- remind_expiring: points.expiring once per member and expiry date, expiry_reminder_days before
  (lots are marked reminded in the same statement).
- review_tiers: members whose qualification period ended are re-evaluated; those below their tier's
  threshold move down (tier.changed), the others start a new period.
- birthdays: the "birthday" earn rules, once per member and year, on the member's birthday in the
  program's time zone (birthdays come from identify traits).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from loyalty.domain import programs as prog
from loyalty.domain import rules
from loyalty.domain.lots import balance
from loyalty.repo import ledger
from loyalty.repo import members as member_repo
from loyalty.repo import programs as program_repo
from loyalty.repo.events import envelope, publish
from loyalty.settings import LoyaltySettings
from mcloud.events.v1 import loyalty_events_pb2
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.clock import Clock
from mcloud_common.errors import DomainError
from mcloud_common.logs import get_logger
from mcloud_common.runtime import Runtime
from mcloud_common.timestamps import set_timestamp

log = get_logger(__name__)

CHUNK = 500
EXPIRY_INTERVAL_SECONDS = 300
TIER_INTERVAL_SECONDS = 900
DAILY_INTERVAL_SECONDS = 3600


async def _programs(conn: asyncpg.Connection | asyncpg.Pool) -> dict[tuple[str, str], pb.Program]:
    rows = await conn.fetch("SELECT tenant_id, id, spec, created_at, updated_at FROM programs")
    return {(str(r["tenant_id"]), str(r["id"])): program_repo.from_row(r) for r in rows}


async def expire_due(pool: asyncpg.Pool, clock: Clock, shards: int) -> int:
    """Expire every lot due as of now; the number of points expired."""
    now = clock.now()
    programs = await _programs(pool)
    total = 0
    while True:
        due = await pool.fetch(
            "SELECT DISTINCT tenant_id, program_id, profile_id FROM lots "
            "WHERE remaining > 0 AND expires_at <= $1 LIMIT $2", now, CHUNK)
        for r in due:
            program = programs.get((str(r["tenant_id"]), str(r["program_id"])))
            if program is None:
                continue
            async with pool.acquire() as conn, conn.transaction():
                book = await ledger.Book.open(conn, str(r["tenant_id"]), program, str(r["profile_id"]), now,
                                              active=False)
                entry = book.expire(f"expiry:{r['profile_id']}:{now.isoformat()}")
                if entry is not None:
                    total -= entry["points"]
                    await book.flush(shards, evaluate_tier=False)
        if len(due) < CHUNK:
            break
    if total:
        log.info("points expired", points=total)
    return total


_REMIND = """
    WITH due AS (
        UPDATE lots SET reminded_at = $3
        WHERE tenant_id = $1 AND program_id = $2 AND remaining > 0 AND reminded_at IS NULL
          AND expires_at > $3 AND expires_at <= $4
        RETURNING profile_id, expires_at, remaining
    )
    SELECT profile_id, min(expires_at) AS expires_at, sum(remaining)::bigint AS points
    FROM due GROUP BY profile_id, date_trunc('day', expires_at) ORDER BY 1, 2
"""


async def remind_expiring(pool: asyncpg.Pool, clock: Clock, shards: int) -> int:
    """points.expiring for points that expire within each program's expiry_reminder_days; the number
    of events."""
    now = clock.now()
    sent = 0
    for (tenant, _), program in (await _programs(pool)).items():
        if program.expiry_reminder_days <= 0:
            continue
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_REMIND, tenant, program.id, now,
                                    now + timedelta(days=program.expiry_reminder_days))
            events = []
            for r in rows:
                lots = await member_repo.open_lots(conn, tenant, program.id, str(r["profile_id"]))
                debt = await conn.fetchval("SELECT debt FROM members WHERE tenant_id = $1 AND program_id = $2 "
                                           "AND profile_id = $3", tenant, program.id, r["profile_id"]) or 0
                payload = loyalty_events_pb2.PointsExpiring(
                    profile_id=str(r["profile_id"]), program_id=program.id, points=r["points"],
                    balance_available=balance(lots, debt, now).available)
                set_timestamp(payload.expires_at, r["expires_at"])
                events.append(envelope(tenant, "points.expiring", str(r["profile_id"]), payload, at=now))
            await publish(conn, events, shards)
            sent += len(events)
    return sent


async def review_tiers(pool: asyncpg.Pool, clock: Clock, shards: int) -> int:
    """Re-evaluate members whose qualification period has ended; the number of tier moves."""
    now = clock.now()
    programs = await _programs(pool)
    moves = 0
    while True:
        due = await pool.fetch(
            "SELECT tenant_id, program_id, profile_id FROM members "
            "WHERE tier_review_at <= $1 AND status = 'active' ORDER BY tier_review_at LIMIT $2", now, CHUNK)
        for r in due:
            tenant, program = str(r["tenant_id"]), programs.get((str(r["tenant_id"]), str(r["program_id"])))
            async with pool.acquire() as conn, conn.transaction():
                member = await member_repo.find(conn, tenant, str(r["program_id"]), str(r["profile_id"]), lock=True)
                if member is None or member["tier_review_at"] is None or member["tier_review_at"] > now:
                    continue  # done meanwhile by another replica
                if program is None:
                    await conn.execute("UPDATE members SET tier_review_at = NULL WHERE tenant_id = $1 "
                                       "AND program_id = $2 AND profile_id = $3", tenant, r["program_id"],
                                       r["profile_id"])
                    continue
                move, got = await member_repo.evaluate_tier(conn, tenant, program, member, now, review=True)
                if move is not None:
                    moves += 1
                    await publish(conn, [member_repo.tier_event(tenant, program, str(r["profile_id"]), move, got,
                                                                now)], shards)
        if len(due) < CHUNK:
            break
    return moves


def _birthday_keys(local: datetime) -> list[str]:
    keys = [local.strftime("%m-%d")]
    leap = local.year % 4 == 0 and (local.year % 100 != 0 or local.year % 400 == 0)
    if keys[0] == "02-28" and not leap:
        keys.append("02-29")  # leap-day birthdays are celebrated on the 28th in common years
    return keys


async def birthdays(pool: asyncpg.Pool, clock: Clock, shards: int) -> int:
    """Give the birthday rules' points to members whose birthday it is; the number of members."""
    now = clock.now()
    given = 0
    for (tenant, _), program in (await _programs(pool)).items():
        if not program.enabled or not any(r.trigger == "birthday" and rules.active(r, now)
                                          for r in program.earn_rules):
            continue
        local = now.astimezone(prog.zone(program))
        rows = await pool.fetch(
            "SELECT profile_id FROM members WHERE tenant_id = $1 AND program_id = $2 AND status = 'active' "
            "AND birthday = ANY($3::text[]) AND (birthday_year IS NULL OR birthday_year < $4)",
            tenant, program.id, _birthday_keys(local), local.year)
        for r in rows:
            async with pool.acquire() as conn, conn.transaction():
                try:
                    entries, _ = await ledger.earn_trigger(conn, tenant, program, str(r["profile_id"]), "birthday",
                                                           f"birthday:{local.year}", now=now, shards=shards)
                except DomainError as exc:
                    log.info("birthday points skipped", reason=exc.code)
                    continue
                await conn.execute("UPDATE members SET birthday_year = $4 WHERE tenant_id = $1 AND program_id = $2 "
                                   "AND profile_id = $3", tenant, program.id, r["profile_id"], local.year)
                given += bool(entries)
    return given


async def install(runtime: Runtime, settings: LoyaltySettings) -> None:
    """Schedule the ledger jobs (they stop with `runtime`)."""
    pool, clock, shards = runtime.pool, runtime.clock, settings.stream_shards
    runtime.every(EXPIRY_INTERVAL_SECONDS, lambda: expire_due(pool, clock, shards), name="points-expiry")
    runtime.every(DAILY_INTERVAL_SECONDS, lambda: remind_expiring(pool, clock, shards), name="points-reminders")
    runtime.every(TIER_INTERVAL_SECONDS, lambda: review_tiers(pool, clock, shards), name="tier-reviews")
    runtime.every(DAILY_INTERVAL_SECONDS, lambda: birthdays(pool, clock, shards), name="birthdays")
