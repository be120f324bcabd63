"""What identity tells loyalty about people: profile.merged folds one membership into another (lots,
debt, qualifying facts and counters move; the ledger records it with MERGE entries on both sides; no
point is created or lost; the better tier is kept or a higher one earned), profile.erased deletes the
person's loyalty data."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from loyalty.domain import programs as prog
from loyalty.domain.lots import balance
from loyalty.repo import members as member_repo
from mcloud.events.v1 import event_pb2
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.ids import new_id

_LOCK = "SELECT * FROM members WHERE tenant_id = $1 AND program_id = $2 AND profile_id = $3 FOR UPDATE"
_COUNTERS = ("lifetime_earned", "lifetime_spent", "lifetime_expired", "lifetime_reversed")


async def merge(conn: asyncpg.Connection, tenant: str, program: pb.Program, from_id: str, into_id: str,
                now: datetime) -> list[event_pb2.Event]:
    """Fold `from_id`'s membership of `program` into `into_id`'s (created from it when `into_id` is not a
    member). Idempotent: a membership already folded is left alone. The events to publish."""
    if from_id == into_id:
        return []
    rows = {}
    for pid in sorted((from_id, into_id)):  # one lock order for every merge: no deadlocks
        rows[pid] = await conn.fetchrow(_LOCK, tenant, program.id, pid)
    src, dst = rows[from_id], rows[into_id]
    if src is None or src["merged_into"] is not None or src["status"] == "merged":
        return []
    if dst is None:
        await conn.execute(
            "UPDATE members SET member_number = member_number || '~' || $4 WHERE tenant_id = $1 AND program_id = $2 "
            "AND profile_id = $3", tenant, program.id, from_id, into_id[:8])
        dst = await conn.fetchrow(
            """
            INSERT INTO members (tenant_id, program_id, profile_id, member_number, status, tier_code, tier_since,
                                 tier_review_at, source, birthday, birthday_year, enrolled_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING *
            """, tenant, program.id, into_id, src["member_number"], src["status"], src["tier_code"],
            src["tier_since"], src["tier_review_at"], src["source"], src["birthday"], src["birthday_year"],
            src["enrolled_at"], now)
    net = await conn.fetchval(
        "SELECT coalesce(sum(remaining), 0)::bigint FROM lots WHERE tenant_id = $1 AND program_id = $2 "
        "AND profile_id = $3 AND remaining > 0", tenant, program.id, from_id) - src["debt"]
    for table in ("lots", "qualifying"):
        await conn.execute(f"UPDATE {table} SET profile_id = $4 WHERE tenant_id = $1 AND program_id = $2 "
                           "AND profile_id = $3", tenant, program.id, from_id, into_id)
    await conn.execute("UPDATE members SET merged_into = $4 WHERE tenant_id = $1 AND program_id = $2 "
                       "AND merged_into = $3", tenant, program.id, from_id, into_id)
    dst = await conn.fetchrow(
        f"""
        UPDATE members SET debt = debt + $4, {', '.join(f'{c} = {c} + ${i}' for i, c in enumerate(_COUNTERS, 5))},
            updated_at = $9
        WHERE tenant_id = $1 AND program_id = $2 AND profile_id = $3 RETURNING *
        """, tenant, program.id, into_id, src["debt"], *(src[c] for c in _COUNTERS), now)
    await conn.execute(
        "UPDATE members SET status = 'merged', merged_into = $4, debt = 0, tier_review_at = NULL, updated_at = $5 "
        "WHERE tenant_id = $1 AND program_id = $2 AND profile_id = $3", tenant, program.id, from_id, into_id, now)
    lots = await member_repo.open_lots(conn, tenant, program.id, into_id)
    after = balance(lots, dst["debt"], now).available
    key = f"merge:{from_id}:{into_id}"
    await conn.executemany(
        """
        INSERT INTO ledger_entries (tenant_id, id, program_id, profile_id, kind, points, balance_after, reason,
                                    description, idempotency_key, details, created_at)
        VALUES ($1, $2, $3, $4, 'merge', $5, $6, 'profile_merged', $7, $8, $9, $10)
        ON CONFLICT (tenant_id, program_id, idempotency_key) DO NOTHING
        """,
        [(tenant, new_id(), program.id, uuid.UUID(from_id), -net, 0, f"moved to {into_id}", f"{key}:out",
          {"into_profile_id": into_id}, now),
         (tenant, new_id(), program.id, uuid.UUID(into_id), net, after, f"moved in from {from_id}", f"{key}:in",
          {"from_profile_id": from_id, "debt_moved": src["debt"]}, now)])
    src_tier, dst_tier = prog.tier_by_code(program, src["tier_code"]), prog.tier_by_code(program, dst["tier_code"])
    floor = src_tier if src_tier.rank > dst_tier.rank else dst_tier
    move, got = await member_repo.evaluate_tier(conn, tenant, program, dst, now, floor_code=floor.code)
    if move is None:
        return []
    return [member_repo.tier_event(tenant, program, into_id, move, got, now)]


async def erase(conn: asyncpg.Connection, tenant: str, profile_id: str, now: datetime | None = None) -> list[str]:
    """Delete everything loyalty holds about the person (every program, and the memberships merged into
    theirs); the profile ids erased. The caller erases coupons and redemptions of those ids too. Each
    live membership erased is counted, anonymously, in member_losses (the report's members lost)."""
    ids = [uuid.UUID(profile_id)] + [r["profile_id"] for r in await conn.fetch(
        "SELECT DISTINCT profile_id FROM members WHERE tenant_id = $1 AND merged_into = $2", tenant, profile_id)]
    await conn.execute(
        "INSERT INTO member_losses (tenant_id, program_id, tier_code, reason, lost_at) "
        "SELECT tenant_id, program_id, tier_code, 'erased', COALESCE($3, now()) FROM members "
        "WHERE tenant_id = $1 AND profile_id = $2 AND merged_into IS NULL", tenant, profile_id, now)
    await conn.execute("SET LOCAL loyalty.erasing = 'on'")
    for table in ("ledger_entries", "lots", "qualifying", "tier_changes", "members"):
        await conn.execute(f"DELETE FROM {table} WHERE tenant_id = $1 AND profile_id = ANY($2::uuid[])", tenant, ids)
    await conn.execute("SET LOCAL loyalty.erasing = 'off'")
    return [str(i) for i in ids]

