"""The program report: outstanding points (the liability), members per tier, and points earned,
spent, expired, reversed and adjusted per period, with enrolments, tier moves and members lost
(memberships erased)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from loyalty.domain import programs as prog
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.timestamps import set_timestamp

_OUTSTANDING = """
    SELECT coalesce(sum(remaining) FILTER (WHERE available_at <= $3), 0)::bigint AS available,
           coalesce(sum(remaining) FILTER (WHERE available_at > $3), 0)::bigint AS pending
    FROM lots
    WHERE tenant_id = $1 AND program_id = $2 AND remaining > 0 AND (expires_at IS NULL OR expires_at > $3)
"""
_MEMBERS = """
    SELECT tier_code, count(*)::bigint AS n, coalesce(sum(debt), 0)::bigint AS debt
    FROM members WHERE tenant_id = $1 AND program_id = $2 AND status = 'active' GROUP BY tier_code
"""
_PERIODS = """
    WITH moves AS (
        SELECT date_trunc($5, created_at AT TIME ZONE $6) AS bucket,
               sum(points) FILTER (WHERE kind = 'earn') AS earned,
               -sum(points) FILTER (WHERE kind = 'spend') AS spent,
               -sum(points) FILTER (WHERE kind = 'expiry') AS expired,
               -sum(points) FILTER (WHERE kind = 'reversal') AS reversed,
               sum(points) FILTER (WHERE kind = 'adjustment') AS adjusted
        FROM ledger_entries
        WHERE tenant_id = $1 AND program_id = $2 AND created_at >= $3 AND created_at < $4
        GROUP BY 1
    ),
    tiers AS (
        SELECT date_trunc($5, changed_at AT TIME ZONE $6) AS bucket,
               count(*) FILTER (WHERE direction = 'enrolled') AS enrolled,
               count(*) FILTER (WHERE direction = 'upgrade') AS upgrades,
               count(*) FILTER (WHERE direction = 'downgrade') AS downgrades
        FROM tier_changes
        WHERE tenant_id = $1 AND program_id = $2 AND changed_at >= $3 AND changed_at < $4
        GROUP BY 1
    ),
    lost AS (
        SELECT date_trunc($5, lost_at AT TIME ZONE $6) AS bucket, count(*) AS lost
        FROM member_losses
        WHERE tenant_id = $1 AND program_id = $2 AND lost_at >= $3 AND lost_at < $4
        GROUP BY 1
    )
    SELECT coalesce(m.bucket, t.bucket, l.bucket) AS bucket, coalesce(m.earned, 0)::bigint AS earned,
           coalesce(m.spent, 0)::bigint AS spent, coalesce(m.expired, 0)::bigint AS expired,
           coalesce(m.reversed, 0)::bigint AS reversed, coalesce(m.adjusted, 0)::bigint AS adjusted,
           coalesce(t.enrolled, 0)::bigint AS enrolled, coalesce(t.upgrades, 0)::bigint AS upgrades,
           coalesce(t.downgrades, 0)::bigint AS downgrades, coalesce(l.lost, 0)::bigint AS lost
    FROM moves m FULL JOIN tiers t ON t.bucket = m.bucket
    FULL JOIN lost l ON l.bucket = coalesce(m.bucket, t.bucket)
    ORDER BY 1
"""


async def report(conn: asyncpg.Connection, tenant: str, program: pb.Program, start: datetime, to: datetime,
                 period: str, now: datetime) -> pb.GetProgramReportResponse:
    tz = prog.zone(program)
    out = pb.GetProgramReportResponse(program_id=program.id, currency=program.currency)
    lots = await conn.fetchrow(_OUTSTANDING, tenant, program.id, now)
    rows = await conn.fetch(_MEMBERS, tenant, program.id)
    counts = {r["tier_code"]: r["n"] for r in rows}
    debt = sum(r["debt"] for r in rows)
    out.members = sum(counts.values())
    out.pending_points = lots["pending"]
    out.debt_points = debt
    out.outstanding_points = lots["available"] + lots["pending"] - debt
    out.liability_minor = out.outstanding_points * program.point_value_minor
    for tier in program.tiers:
        out.tiers.add(tier_code=tier.code, tier_name=tier.name, members=counts.pop(tier.code, 0))
    for code, n in counts.items():  # tiers since removed from the program
        out.tiers.add(tier_code=code, tier_name=code, members=n)
    for r in await conn.fetch(_PERIODS, tenant, program.id, start, to, period, tz.key):
        p = out.periods.add(earned=r["earned"], spent=r["spent"], expired=r["expired"], reversed=r["reversed"],
                            adjusted=r["adjusted"], members_enrolled=r["enrolled"], tier_upgrades=r["upgrades"],
                            tier_downgrades=r["downgrades"], members_lost=r["lost"])
        set_timestamp(p.start, r["bucket"].replace(tzinfo=tz))
    set_timestamp(out.as_of, now)
    return out
