"""The rewards catalogue and redemption orders.

A redemption is one transaction: the member's row is locked, the points are debited through the
ledger (a SPEND entry, reason "reward"), the stock is taken by a conditional UPDATE (never below
zero, however many members redeem at once), a coupon is issued for coupon rewards, the order is
written and reward.redeemed is enqueued. Cancelling credits the points back (an ADJUSTMENT that
reverses the spend) and returns the stock, again in one transaction.

Lock order everywhere: member row, then reward row (redemption rows before both when updating one).
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

import asyncpg
import orjson

from loyalty.domain import programs as prog
from loyalty.domain.lots import balance
from loyalty.domain.rewards import (
    KIND_ENUMS,
    KINDS,
    MAX_QUANTITY,
    STATUS_ENUMS,
    STATUSES,
    check_reward,
    check_transition,
    check_update,
    invalid,
    parse_address,
    tier_allows,
)
from loyalty.repo import coupons as coupon_repo
from loyalty.repo import ledger
from loyalty.repo import members as member_repo
from loyalty.repo.events import envelope, publish
from mcloud.events.v1 import loyalty_events_pb2
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.errors import FailedPrecondition, NotFound
from mcloud_common.ids import new_id, parse_uuid
from mcloud_common.timestamps import set_timestamp

# --- messages -------------------------------------------------------------------------------------

def reward_message(row: asyncpg.Record) -> pb.Reward:
    r = pb.Reward(id=str(row["id"]), program_id=str(row["program_id"]), name=row["name"],
                  description=row["description"], image_url=row["image_url"], kind=KIND_ENUMS[row["kind"]],
                  points_cost=row["points_cost"], stock=row["stock"], unlimited_stock=row["unlimited_stock"],
                  min_tier_code=row["min_tier_code"], enabled=row["enabled"],
                  coupon_campaign_id=str(row["coupon_campaign_id"]) if row["coupon_campaign_id"] else "")
    set_timestamp(r.created_at, row["created_at"])
    set_timestamp(r.updated_at, row["updated_at"])
    return r


def redemption_message(row: asyncpg.Record) -> pb.RewardRedemption:
    address = row["shipping_address"]
    if address is not None and not isinstance(address, str | bytes):
        address = orjson.dumps(address)
    r = pb.RewardRedemption(
        id=str(row["id"]), program_id=str(row["program_id"]), profile_id=str(row["profile_id"]),
        reward_id=str(row["reward_id"]), quantity=row["quantity"], points=row["points"],
        status=STATUS_ENUMS[row["status"]], ledger_entry_id=str(row["ledger_entry_id"]),
        coupon_code=row["coupon_code"], tracking_number=row["tracking_number"],
        shipping_address_json=(address.decode() if isinstance(address, bytes) else address) or "")
    set_timestamp(r.created_at, row["created_at"])
    set_timestamp(r.updated_at, row["updated_at"])
    return r


def _token(*parts: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([str(p) for p in parts])).decode()


def _untoken(token: str, n: int) -> list[str]:
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(parts, list) or len(parts) != n or not all(isinstance(p, str) for p in parts):
            raise ValueError(token)
        return parts
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise invalid("page_token is not one this API returned", "invalid_page_token", "page_token") from None


def _page_size(size: int) -> int:
    if size < 0:
        raise invalid("page_size must be >= 0", "invalid_page_size", "page_size")
    return min(size or 50, 500)


# --- catalogue ------------------------------------------------------------------------------------

async def upsert(conn: asyncpg.Connection, tenant: str, program: pb.Program, reward: pb.Reward, *,
                 now: datetime) -> pb.Reward:
    """Create (empty id) or replace a catalogue item of `program`; `stock` is set to the units left as given."""
    check_reward(program, reward)
    campaign = None
    if reward.kind == pb.REWARD_KIND_COUPON:
        campaign = uuid.UUID(reward.coupon_campaign_id)
        if not await conn.fetchval("SELECT 1 FROM coupon_campaigns WHERE tenant_id = $1 AND id = $2", tenant, campaign):
            raise invalid("reward.coupon_campaign_id names no coupon campaign of this tenant",
                          "unknown_coupon_campaign", "reward.coupon_campaign_id")
    values = (reward.name.strip(), reward.description, reward.image_url, KINDS[reward.kind], reward.points_cost,
              reward.stock, reward.unlimited_stock, reward.min_tier_code, campaign, reward.enabled, now)
    if not reward.id:
        row = await conn.fetchrow(
            """
            INSERT INTO rewards (tenant_id, id, program_id, name, description, image_url, kind, points_cost, stock,
                                 unlimited_stock, min_tier_code, coupon_campaign_id, enabled, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) RETURNING *
            """, tenant, new_id(), program.id, *values)
        return reward_message(row)
    row = await conn.fetchrow(
        """
        UPDATE rewards SET name = $4, description = $5, image_url = $6, kind = $7, points_cost = $8, stock = $9,
                           unlimited_stock = $10, min_tier_code = $11, coupon_campaign_id = $12, enabled = $13,
                           updated_at = $14
        WHERE tenant_id = $1 AND id = $2 AND program_id = $3 RETURNING *
        """, tenant, uuid.UUID(reward.id), program.id, *values)
    if row is None:
        raise NotFound(f"reward {reward.id} not found in program {program.id}", code="reward_not_found")
    return reward_message(row)


async def get_reward(conn: asyncpg.Connection, tenant: str, program_id: str, reward_id: str) -> asyncpg.Record:
    if parse_uuid(reward_id) is None:
        raise invalid("reward_id must be a UUID", "invalid_reward_id", "reward_id")
    row = await conn.fetchrow("SELECT * FROM rewards WHERE tenant_id = $1 AND id = $2 AND program_id = $3",
                              tenant, uuid.UUID(reward_id), program_id)
    if row is None:
        raise NotFound(f"reward {reward_id} not found in program {program_id}", code="reward_not_found")
    return row


async def list_rewards(conn: asyncpg.Connection, tenant: str, program: pb.Program, *, page_size: int,
                       page_token: str, profile_id: str = "", eligible_only: bool = False, now: datetime
                       ) -> tuple[list[pb.Reward], str]:
    """The catalogue cheapest first. With `eligible_only`, only what `profile_id` can redeem now:
    enabled, in stock, allowed for their tier and affordable from their available balance."""
    size = _page_size(page_size)
    after = _untoken(page_token, 2) if page_token else None
    if after is not None and (not after[0].lstrip("-").isdigit() or parse_uuid(after[1]) is None):
        raise invalid("page_token is not one this API returned", "invalid_page_token", "page_token")
    affordable, higher = 0, []
    if eligible_only:
        if not profile_id:
            raise invalid("profile_id is required with eligible_only", "profile_id_required", "profile_id")
        member = await member_repo.get(conn, tenant, program.id, profile_id)
        lots = await member_repo.open_lots(conn, tenant, program.id, str(member["profile_id"]))
        affordable = balance(lots, member["debt"], now).available
        rank = prog.tier_by_code(program, member["tier_code"]).rank
        higher = [t.code for t in program.tiers if t.rank > rank]
    rows = await conn.fetch(
        """
        SELECT * FROM rewards
        WHERE tenant_id = $1 AND program_id = $2
          AND ($3::bigint IS NULL OR (points_cost, id) > ($3, $4::uuid))
          AND (NOT $5 OR (enabled AND (unlimited_stock OR stock > 0) AND points_cost <= $6
                          AND NOT (min_tier_code = ANY($7::text[]))))
        ORDER BY points_cost, id LIMIT $8
        """, tenant, program.id, int(after[0]) if after else None, after[1] if after else None, eligible_only,
        affordable, higher, size + 1)
    more = len(rows) > size
    rows = rows[:size]
    return [reward_message(r) for r in rows], _token(rows[-1]["points_cost"], rows[-1]["id"]) if more else ""


# --- redemptions ----------------------------------------------------------------------------------

async def redeem(conn: asyncpg.Connection, tenant: str, program: pb.Program, request: pb.RedeemRewardRequest, *,
                 now: datetime, shards: int) -> tuple[pb.RewardRedemption, pb.Member]:
    """Exchange points for a reward, all or nothing. Run inside a transaction on `conn`. A request key
    already used in this program answers with the redemption it made (never a second debit)."""
    qty = request.quantity or 1
    if not 0 < qty <= MAX_QUANTITY:
        raise invalid(f"quantity must be 1..{MAX_QUANTITY} (0 = 1)", "invalid_quantity", "quantity")
    key = request.idempotency_key
    if key:
        row = await conn.fetchrow(
            "SELECT * FROM reward_redemptions WHERE tenant_id = $1 AND program_id = $2 AND idempotency_key = $3",
            tenant, program.id, key)
        if row is not None:
            member = await member_repo.get(conn, tenant, program.id, str(row["profile_id"]))
            return redemption_message(row), await member_repo.view(conn, tenant, program, member, now)
    reward = await get_reward(conn, tenant, program.id, request.reward_id)
    address = parse_address(request.shipping_address_json) if request.shipping_address_json else None
    if reward["kind"] == "gift" and address is None:
        raise invalid("shipping_address_json is required for a gift", "shipping_address_required",
                   "shipping_address_json")
    if not reward["enabled"]:
        raise FailedPrecondition("the reward is not available", code="reward_disabled")
    # the member first (the ledger locks the same row again): tier and balance are read under the lock
    member = await member_repo.get(conn, tenant, program.id, request.profile_id, lock=True)
    profile_id = str(member["profile_id"])
    if not tier_allows(program, member["tier_code"], reward["min_tier_code"]):
        raise FailedPrecondition(f"the reward needs tier {reward['min_tier_code']} or higher", code="tier_too_low",
                                 required=reward["min_tier_code"], tier=member["tier_code"])
    if not reward["unlimited_stock"] and reward["stock"] < qty:
        raise FailedPrecondition("the reward is out of stock", code="out_of_stock", stock=reward["stock"])
    redemption_id = new_id()
    points = reward["points_cost"] * qty
    entry, member_view = await ledger.debit(
        conn, tenant, program, profile_id, points, reason="reward", key=f"reward:{redemption_id}", now=now,
        shards=shards, description=reward["name"], details={"reward_redemption_id": str(redemption_id)})
    if not reward["unlimited_stock"]:
        # re-checked on the row as committed by concurrent redemptions: never below zero
        left = await conn.fetchval(
            "UPDATE rewards SET stock = stock - $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2 AND stock >= $3 "
            "RETURNING stock", tenant, reward["id"], qty, now)
        if left is None:
            raise FailedPrecondition("the reward is out of stock", code="out_of_stock")
    status, code = "pending", ""
    if reward["kind"] == "coupon":
        coupon = await coupon_repo.issue(conn, tenant, str(reward["coupon_campaign_id"]), profile_id, source="reward",
                                         key=f"reward:{redemption_id}", now=now, shards=shards)
        status, code = "fulfilled", coupon.code
    row = await conn.fetchrow(
        """
        INSERT INTO reward_redemptions (tenant_id, id, program_id, profile_id, reward_id, kind, quantity, points,
                                        status, ledger_entry_id, coupon_code, shipping_address, idempotency_key,
                                        created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::jsonb, $13, $14, $14) RETURNING *
        """, tenant, redemption_id, program.id, uuid.UUID(profile_id), reward["id"], reward["kind"], qty, points,
        status, uuid.UUID(entry.id), code, orjson.dumps(address).decode() if address is not None else None, key, now)
    payload = loyalty_events_pb2.RewardRedeemed(
        profile_id=profile_id, program_id=program.id, redemption_id=str(redemption_id), reward_id=str(reward["id"]),
        quantity=qty, points=points, reward_kind=reward["kind"], coupon_code=code)
    await publish(conn, [envelope(tenant, "reward.redeemed", profile_id, payload, at=now)], shards)
    return redemption_message(row), member_view


async def get_redemption(conn: asyncpg.Connection, tenant: str, redemption_id: str, *,
                         lock: bool = False) -> asyncpg.Record:
    if parse_uuid(redemption_id) is None:
        raise invalid("redemption_id must be a UUID", "invalid_redemption_id", "redemption_id")
    row = await conn.fetchrow("SELECT * FROM reward_redemptions WHERE tenant_id = $1 AND id = $2"
                              + (" FOR UPDATE" if lock else ""), tenant, uuid.UUID(redemption_id))
    if row is None:
        raise NotFound(f"redemption {redemption_id} not found", code="redemption_not_found")
    return row


async def update_redemption(conn: asyncpg.Connection, tenant: str, program: pb.Program,
                            request: pb.UpdateRewardRedemptionRequest, *, now: datetime, shards: int
                            ) -> pb.RewardRedemption:
    """Move a redemption of `program` to `request.status`; cancelling credits the points back and returns
    the stock. Asking for the status it already has changes nothing (but a new tracking number).
    Run inside a transaction on `conn`."""
    check_update(request)
    row = await get_redemption(conn, tenant, request.redemption_id, lock=True)
    if str(row["program_id"]) != program.id:
        raise NotFound(f"redemption {request.redemption_id} not found", code="redemption_not_found")
    target = STATUSES[request.status]
    tracking = request.tracking_number or row["tracking_number"]
    if row["status"] == target:
        if tracking == row["tracking_number"]:
            return redemption_message(row)
        row = await conn.fetchrow("UPDATE reward_redemptions SET tracking_number = $3, updated_at = $4 "
                                  "WHERE tenant_id = $1 AND id = $2 RETURNING *", tenant, row["id"], tracking, now)
        return redemption_message(row)
    check_transition(row["kind"], row["status"], target)
    refund_id, reason = None, ""
    if target == "cancelled":
        reason = request.reason.strip()
        entry, _ = await ledger.credit(
            conn, tenant, program, str(row["profile_id"]), row["points"], reason="reward_cancelled",
            key=f"reward-cancel:{row['id']}", now=now, shards=shards, description=reason,
            reverses_entry_id=row["ledger_entry_id"], details={"reward_redemption_id": str(row["id"])})
        refund_id = uuid.UUID(entry.id)
        await conn.execute(
            "UPDATE rewards SET stock = stock + $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2 "
            "AND NOT unlimited_stock", tenant, row["reward_id"], row["quantity"], now)
    row = await conn.fetchrow(
        """
        UPDATE reward_redemptions
        SET status = $3, tracking_number = $4, refund_entry_id = coalesce($5, refund_entry_id),
            cancel_reason = CASE WHEN $6 = '' THEN cancel_reason ELSE $6 END, updated_at = $7
        WHERE tenant_id = $1 AND id = $2 RETURNING *
        """, tenant, row["id"], target, tracking, refund_id, reason, now)
    return redemption_message(row)


async def list_redemptions(conn: asyncpg.Connection, tenant: str, program: pb.Program, profile_id: str, *,
                           page_size: int, page_token: str) -> tuple[list[pb.RewardRedemption], str]:
    """A member's redemptions newest first (a merged-away profile id lists the survivor's)."""
    size = _page_size(page_size)
    after = _untoken(page_token, 2) if page_token else None
    try:
        at, last = (datetime.fromisoformat(after[0]), uuid.UUID(after[1])) if after else (None, None)
    except ValueError:
        raise invalid("page_token is not one this API returned", "invalid_page_token", "page_token") from None
    member = await member_repo.find(conn, tenant, program.id, profile_id)
    owner = member["profile_id"] if member is not None else uuid.UUID(profile_id)
    rows = await conn.fetch(
        """
        SELECT * FROM reward_redemptions
        WHERE tenant_id = $1 AND program_id = $2 AND profile_id = $3
          AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
        ORDER BY created_at DESC, id DESC LIMIT $6
        """, tenant, program.id, owner, at, last, size + 1)
    more = len(rows) > size
    rows = rows[:size]
    return ([redemption_message(r) for r in rows],
            _token(rows[-1]["created_at"].isoformat(), rows[-1]["id"]) if more else "")


# --- people ---------------------------------------------------------------------------------------

async def merge_profile(conn: asyncpg.Connection, tenant: str, from_profile_id: str, into_profile_id: str) -> int:
    """profile.merged: `into_profile_id` owns `from_profile_id`'s redemptions; how many moved."""
    if from_profile_id == into_profile_id:
        return 0
    result = await conn.execute(
        "UPDATE reward_redemptions SET profile_id = $3 WHERE tenant_id = $1 AND profile_id = $2",
        tenant, uuid.UUID(from_profile_id), uuid.UUID(into_profile_id))
    return int(result.split()[-1])


async def erase_profile(conn: asyncpg.Connection, tenant: str, profile_id: str) -> int:
    """profile.erased: the person's redemptions (with their shipping addresses) are deleted; how many."""
    result = await conn.execute("DELETE FROM reward_redemptions WHERE tenant_id = $1 AND profile_id = $2",
                                tenant, uuid.UUID(profile_id))
    return int(result.split()[-1])
