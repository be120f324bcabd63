"""Memberships: enrolment, locking a member for a balance change, the member view (balance from
open lots, tier and distance to the next one) and tier evaluation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from loyalty.domain import programs as prog
from loyalty.domain.lots import Lot, balance
from loyalty.repo.events import envelope
from mcloud.events.v1 import event_pb2, loyalty_events_pb2
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.errors import FailedPrecondition, NotFound
from mcloud_common.timestamps import set_timestamp

_COLUMNS = """tenant_id, program_id, profile_id, member_number, status, tier_code, tier_since, tier_review_at,
    debt, lifetime_earned, lifetime_spent, lifetime_expired, lifetime_reversed, source, birthday,
    merged_into, enrolled_at, updated_at"""

STATUS = {"active": pb.MEMBER_STATUS_ACTIVE, "suspended": pb.MEMBER_STATUS_SUSPENDED}


async def enroll(conn: asyncpg.Connection, tenant: str, program: pb.Program, profile_id: str, source: str,
                 now: datetime) -> tuple[asyncpg.Record, list[event_pb2.Event]]:
    """The membership of `profile_id`, created in the base tier (member.enrolled to publish) if new."""
    base = prog.base_tier(program)
    row = await conn.fetchrow(
        f"""
        INSERT INTO members (tenant_id, program_id, profile_id, member_number, tier_code, tier_since, source,
                             enrolled_at, updated_at)
        VALUES ($1, $2, $3, nextval('member_numbers')::text, $4, $5, $6, $5, $5)
        ON CONFLICT (tenant_id, program_id, profile_id) DO NOTHING
        RETURNING {_COLUMNS}
        """,
        tenant, program.id, profile_id, base.code, now, source,
    )
    if row is None:
        return await get(conn, tenant, program.id, profile_id), []
    await conn.execute(
        "INSERT INTO tier_changes (tenant_id, program_id, profile_id, from_tier, to_tier, direction, changed_at) "
        "VALUES ($1, $2, $3, '', $4, 'enrolled', $5)", tenant, program.id, profile_id, base.code, now)
    payload = loyalty_events_pb2.MemberEnrolled(profile_id=profile_id, program_id=program.id,
                                                member_number=row["member_number"], tier_code=base.code,
                                                source=source)
    return row, [envelope(tenant, "member.enrolled", profile_id, payload, at=now)]


async def find(conn: asyncpg.Connection, tenant: str, program_id: str, profile_id: str, *,
               lock: bool = False) -> asyncpg.Record | None:
    """The membership, following merges to the surviving one; None if not a member."""
    for _ in range(16):
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM members WHERE tenant_id = $1 AND program_id = $2 AND profile_id = $3"
            + (" FOR UPDATE" if lock else ""), tenant, program_id, profile_id)
        if row is None or row["merged_into"] is None:
            return row
        profile_id = str(row["merged_into"])
    return None


async def get(conn: asyncpg.Connection, tenant: str, program_id: str, profile_id: str, *,
              lock: bool = False) -> asyncpg.Record:
    row = await find(conn, tenant, program_id, profile_id, lock=lock)
    if row is None:
        raise NotFound(f"profile {profile_id} is not a member of program {program_id}", code="not_a_member")
    return row


async def lock_active(conn: asyncpg.Connection, tenant: str, program_id: str, profile_id: str) -> asyncpg.Record:
    """Lock the membership row: every change of a member's points holds it, so they are serialised."""
    row = await get(conn, tenant, program_id, profile_id, lock=True)
    if row["status"] != "active":
        raise FailedPrecondition(f"the membership is {row['status']}", code="member_not_active")
    return row


async def open_lots(conn: asyncpg.Connection, tenant: str, program_id: str, profile_id: str) -> list[Lot]:
    rows = await conn.fetch(
        "SELECT id, remaining, available_at, expires_at, order_id FROM lots "
        "WHERE tenant_id = $1 AND program_id = $2 AND profile_id = $3 AND remaining > 0",
        tenant, program_id, profile_id)
    return [Lot(r["id"], r["remaining"], r["available_at"], r["expires_at"], r["order_id"]) for r in rows]


async def progress(conn: asyncpg.Connection, tenant: str, program: pb.Program, profile_id: str,
                   now: datetime) -> prog.Progress:
    """Qualifying totals over the program's tier window ending `now`."""
    start = prog.window_start(program, now)
    row = await conn.fetchrow(
        """
        SELECT coalesce(sum(points), 0)::bigint AS points, coalesce(sum(spend_minor), 0)::bigint AS spend,
               coalesce(sum(orders), 0)::bigint AS orders
        FROM qualifying
        WHERE tenant_id = $1 AND program_id = $2 AND profile_id = $3
          AND ($4::timestamptz IS NULL OR occurred_at >= $4) AND occurred_at <= $5
        """, tenant, program.id, profile_id, start, now)
    return prog.Progress(max(row["points"], 0), max(row["spend"], 0), max(row["orders"], 0))


@dataclass
class TierMove:
    from_tier: pb.Tier
    to_tier: pb.Tier

    @property
    def direction(self) -> str:
        return "upgrade" if self.to_tier.rank > self.from_tier.rank else "downgrade"


def decide_tier(program: pb.Program, member: asyncpg.Record, got: prog.Progress, *, review: bool = False,
                floor_code: str = "") -> TierMove | None:
    """Where `got` takes a member: up at once; down only when the program's policy allows it now
    (IMMEDIATE, or PERIOD_END when `review` is the period's end). `floor_code`: never below this tier
    (a merge keeps the better of two tiers). None when the member stays."""
    current = prog.tier_by_code(program, member["tier_code"])
    target = prog.qualified_tier(program, got)
    if floor_code:
        floor = prog.tier_by_code(program, floor_code)
        if floor.rank > target.rank:
            target = floor
    if target.rank < current.rank:
        policy = program.downgrade_policy
        if not (policy == pb.DOWNGRADE_POLICY_IMMEDIATE or (policy == pb.DOWNGRADE_POLICY_PERIOD_END and review)):
            target = current
    if target.code == member["tier_code"]:
        return None
    return TierMove(current, target)


async def evaluate_tier(conn: asyncpg.Connection, tenant: str, program: pb.Program, member: asyncpg.Record,
                        now: datetime, *, review: bool = False, floor_code: str = ""
                        ) -> tuple[TierMove | None, prog.Progress]:
    """Move a locked member to the tier their qualifying totals earn (see decide_tier) and record it."""
    profile_id = str(member["profile_id"])
    got = await progress(conn, tenant, program, profile_id, now)
    move = decide_tier(program, member, got, review=review, floor_code=floor_code)
    if move is None:
        if review:
            await conn.execute(
                "UPDATE members SET tier_review_at = $4, updated_at = $5 "
                "WHERE tenant_id = $1 AND program_id = $2 AND profile_id = $3",
                tenant, program.id, profile_id, next_review(program, now), now)
        return None, got
    await conn.execute(
        """
        UPDATE members SET tier_code = $4, tier_since = $5, tier_review_at = $6, updated_at = $5
        WHERE tenant_id = $1 AND program_id = $2 AND profile_id = $3
        """, tenant, program.id, profile_id, move.to_tier.code, now, next_review(program, now))
    await conn.execute(
        "INSERT INTO tier_changes (tenant_id, program_id, profile_id, from_tier, to_tier, direction, changed_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        tenant, program.id, profile_id, move.from_tier.code, move.to_tier.code, move.direction, now)
    return move, got


def next_review(program: pb.Program, now: datetime) -> datetime | None:
    """PERIOD_END: the end of the qualification period starting now. IMMEDIATE with a rolling window:
    tomorrow, as qualifying facts age out of the window day by day."""
    if program.downgrade_policy == pb.DOWNGRADE_POLICY_IMMEDIATE and program.tier_window_months > 0:
        return now + timedelta(days=1)
    return prog.review_at(program, now)


def tier_event(tenant: str, program: pb.Program, profile_id: str, move: TierMove, got: prog.Progress,
               now: datetime) -> event_pb2.Event:
    nxt = prog.next_tier(program, move.to_tier)
    payload = loyalty_events_pb2.TierChanged(
        profile_id=profile_id, program_id=program.id, from_tier_code=move.from_tier.code,
        to_tier_code=move.to_tier.code, direction=move.direction, qualifying_points=got.points,
        benefit_codes=[b.code for b in move.to_tier.benefits],
        next_tier_code=nxt.code if nxt else "",
        points_to_next_tier=max(prog.threshold(program, nxt)[0] - got.measure(program), 0) if nxt else 0)
    return envelope(tenant, "tier.changed", profile_id, payload, at=now)


async def view(conn: asyncpg.Connection, tenant: str, program: pb.Program, member: asyncpg.Record,
               now: datetime, *, lots: list[Lot] | None = None, got: prog.Progress | None = None,
               debt: int | None = None) -> pb.Member:
    """The member as callers see it; pass what the caller already holds to save reads."""
    profile_id = str(member["profile_id"])
    if lots is None:
        lots = await open_lots(conn, tenant, program.id, profile_id)
    if got is None:
        got = await progress(conn, tenant, program, profile_id, now)
    bal = balance(lots, member["debt"] if debt is None else debt, now)
    out = pb.Member(profile_id=profile_id, program_id=program.id, member_number=member["member_number"],
                    status=STATUS.get(member["status"], pb.MEMBER_STATUS_UNSPECIFIED))
    b = out.balance
    b.available, b.pending, b.debt = bal.available, bal.pending, member["debt"] if debt is None else debt
    b.lifetime_earned, b.lifetime_spent = member["lifetime_earned"], member["lifetime_spent"]
    b.lifetime_expired, b.lifetime_reversed = member["lifetime_expired"], member["lifetime_reversed"]
    b.qualifying, b.qualifying_spend_minor, b.qualifying_orders = got.points, got.spend_minor, got.orders
    if bal.next_expiry_at is not None:
        b.next_expiring_points = bal.next_expiring
        set_timestamp(b.next_expiry_at, bal.next_expiry_at)
    tier = prog.tier_by_code(program, member["tier_code"])
    t = out.tier
    t.tier_code, t.tier_name, t.rank = tier.code, tier.name, tier.rank
    t.basis = prog.BASIS_NAMES.get(program.tier_basis, "points")
    t.points_multiplier, t.discount_percent, t.free_shipping = (tier.points_multiplier or 1.0,
                                                                 tier.discount_percent, tier.free_shipping)
    set_timestamp(t.since, member["tier_since"])
    if member["tier_review_at"] is not None:
        set_timestamp(t.review_at, member["tier_review_at"])
    if (nxt := prog.next_tier(program, tier)) is not None:
        t.next_tier_code, t.next_tier_name = nxt.code, nxt.name
        t.next_tier_threshold = prog.threshold(program, nxt)[0]
        t.points_to_next_tier = max(t.next_tier_threshold - got.measure(program), 0)
    out.benefits.extend(tier.benefits)
    set_timestamp(out.enrolled_at, member["enrolled_at"])
    set_timestamp(out.updated_at, member["updated_at"])
    return out


def as_uuid(value: str | uuid.UUID) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)
