"""Coupon housekeeping, one pass a minute (`expire_and_remind`):

1. lapsed reservations are released (ISSUED again, or EXPIRED when past expiry);
2. ISSUED coupons past expires_at become EXPIRED;
3. coupon.expiring is emitted once per still-ISSUED coupon when its remind_at (the campaign's
   remind_days_before_expiry before expiry) has come; reminded_at records it.

Set-based, in chunks; each chunk is one transaction with its events, its rows claimed with
FOR UPDATE SKIP LOCKED, and every statement re-checks the condition it acts on, so a second or
concurrent pass changes and emits nothing twice. Reads already treat lapsed holds and overdue
coupons as ISSUED / EXPIRED, so this pass only makes the stored state (and the indexes) catch up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from loyalty.repo.events import envelope, publish
from loyalty.settings import LoyaltySettings
from mcloud.events.v1 import loyalty_events_pb2 as ev
from mcloud_common.clock import Clock
from mcloud_common.runtime import Runtime
from mcloud_common.timestamps import set_timestamp

PASS_INTERVAL_SECONDS = 60
CHUNK = 1000

_RELEASE_LAPSED = """
    WITH due AS MATERIALIZED (
        SELECT tenant_id, code FROM coupons
        WHERE state = 'reserved' AND reserved_until <= $1
        LIMIT $2 FOR UPDATE SKIP LOCKED
    )
    UPDATE coupons c SET state = CASE WHEN c.expires_at <= $1 THEN 'expired' ELSE 'issued' END,
                         reserved_order_id = '', reserved_until = NULL
    FROM due WHERE c.tenant_id = due.tenant_id AND c.code = due.code AND c.state = 'reserved'
"""

_EXPIRE = """
    WITH due AS MATERIALIZED (
        SELECT tenant_id, code FROM coupons
        WHERE state = 'issued' AND expires_at <= $1
        LIMIT $2 FOR UPDATE SKIP LOCKED
    )
    UPDATE coupons c SET state = 'expired'
    FROM due WHERE c.tenant_id = due.tenant_id AND c.code = due.code AND c.state = 'issued'
"""

_REMIND = """
    WITH due AS MATERIALIZED (
        SELECT tenant_id, code FROM coupons
        WHERE state = 'issued' AND reminded_at IS NULL AND remind_at IS NOT NULL AND remind_at <= $1
          AND expires_at > $1
        LIMIT $2 FOR UPDATE SKIP LOCKED
    )
    UPDATE coupons c SET reminded_at = $1
    FROM due WHERE c.tenant_id = due.tenant_id AND c.code = due.code AND c.reminded_at IS NULL
    RETURNING c.tenant_id::text AS tenant_id, c.code, c.campaign_id::text AS campaign_id,
              c.profile_id::text AS profile_id, c.expires_at
"""


@dataclass(frozen=True)
class PassResult:
    released: int
    expired: int
    reminded: int


async def _chunks(pool: asyncpg.Pool, sql: str, now: datetime, chunk: int) -> int:
    total = 0
    while True:
        async with pool.acquire() as conn:
            result = await conn.execute(sql, now, chunk)
        n = int(result.split()[-1])
        total += n
        if n < chunk:
            return total


async def release_lapsed_holds(pool: asyncpg.Pool, clock: Clock, *, chunk: int = CHUNK) -> int:
    """Reservations past reserved_until go back to ISSUED (EXPIRED past expiry); how many."""
    return await _chunks(pool, _RELEASE_LAPSED, clock.now(), chunk)


async def expire(pool: asyncpg.Pool, clock: Clock, *, chunk: int = CHUNK) -> int:
    """ISSUED coupons past expires_at become EXPIRED; how many."""
    return await _chunks(pool, _EXPIRE, clock.now(), chunk)


async def remind(pool: asyncpg.Pool, clock: Clock, shards: int, *, chunk: int = CHUNK) -> int:
    """coupon.expiring for every still-ISSUED coupon whose reminder is due, once each; how many."""
    now = clock.now()
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_REMIND, now, chunk)
            events = []
            for r in rows:
                payload = ev.CouponExpiring(profile_id=r["profile_id"], campaign_id=r["campaign_id"], code=r["code"])
                set_timestamp(payload.expires_at, r["expires_at"])
                events.append(envelope(r["tenant_id"], "coupon.expiring", r["profile_id"], payload, at=now))
            if events:
                await publish(conn, events, shards)
        total += len(rows)
        if len(rows) < chunk:
            return total


async def expire_and_remind(pool: asyncpg.Pool, clock: Clock, shards: int, *, chunk: int = CHUNK) -> PassResult:
    """One housekeeping pass (see the module doc); safe to run twice or concurrently."""
    released = await release_lapsed_holds(pool, clock, chunk=chunk)
    expired = await expire(pool, clock, chunk=chunk)
    reminded = await remind(pool, clock, shards, chunk=chunk)
    return PassResult(released, expired, reminded)


async def install(runtime: Runtime, settings: LoyaltySettings) -> None:
    """Start the coupon jobs (they stop with `runtime`)."""
    runtime.every(PASS_INTERVAL_SECONDS,
                  lambda: expire_and_remind(runtime.pool, runtime.clock, settings.stream_shards),
                  name="coupon-expiry")
