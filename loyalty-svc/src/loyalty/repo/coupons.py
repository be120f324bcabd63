"""Coupon campaigns and coupons in Postgres (asyncpg), each use case one transaction with its events.

Concurrency, in the order locks are taken (one order everywhere, so no deadlocks):
issue key (advisory) -> campaign+profile (advisory, per-profile limit) -> coupon row (a pool code
taken with SKIP LOCKED, or the coupon being reserved/redeemed) -> campaign row (the conditional
UPDATE of its counters, last, so the hot row is held only for the end of the transaction).
Every function that writes opens `conn.transaction()`: its own transaction, or a savepoint inside
the caller's (the identity-events consumer, rewards), so a refused call leaves no trace.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from loyalty.domain import coupons as rules
from loyalty.repo.events import envelope, publish
from mcloud.events.v1 import loyalty_events_pb2 as ev
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from mcloud_common.ids import new_id, parse_uuid
from mcloud_common.timestamps import from_timestamp, set_timestamp

CODE_ATTEMPTS = 8
MAX_CODES_PER_CALL = 10_000
MAX_KEY_LENGTH = 512

_CAMPAIGN_COLUMNS = """
    name, description, discount_type, percent_off, amount_off_minor, currency, min_order_minor, categories,
    gift_item_id, valid_from, valid_until, validity_days, max_issued, per_profile_limit,
    remind_days_before_expiry, code_prefix, code_source, status
"""

# The coupon joined with what the usage rules need from its campaign.
_COUPON_FOR_UPDATE = """
    SELECT c.*, k.valid_from AS campaign_valid_from, k.valid_until AS campaign_valid_until
    FROM coupons c JOIN coupon_campaigns k ON k.tenant_id = c.tenant_id AND k.id = c.campaign_id
    WHERE c.tenant_id = $1 AND c.code = $2 AND c.state NOT IN ('available', 'erased')
    FOR UPDATE OF c
"""


# ---------------------------------------------------------------------------------------------- mapping

def _ts(target, value: datetime | None) -> None:
    if value is not None:
        set_timestamp(target, value)


def campaign_message(row: asyncpg.Record) -> pb.CouponCampaign:
    c = pb.CouponCampaign(
        id=str(row["id"]), name=row["name"], description=row["description"],
        discount_type=rules.DISCOUNT_TO_PB[row["discount_type"]], percent_off=row["percent_off"],
        amount_off_minor=row["amount_off_minor"], currency=row["currency"], min_order_minor=row["min_order_minor"],
        categories=list(row["categories"]), gift_item_id=row["gift_item_id"], validity_days=row["validity_days"],
        max_issued=row["max_issued"], per_profile_limit=row["per_profile_limit"],
        remind_days_before_expiry=row["remind_days_before_expiry"], code_prefix=row["code_prefix"],
        status=rules.STATUS_TO_PB[row["status"]], issued_count=row["issued_count"],
        redeemed_count=row["redeemed_count"], code_source=rules.SOURCE_TO_PB[row["code_source"]],
        pool_available=row["pool_available"],
    )
    _ts(c.valid_from, row["valid_from"])
    _ts(c.valid_until, row["valid_until"])
    _ts(c.created_at, row["created_at"])
    _ts(c.updated_at, row["updated_at"])
    return c


def coupon_message(row: asyncpg.Record, now: datetime) -> pb.Coupon:
    """The coupon as callers see it at `now` (lapsed holds ISSUED, overdue ones EXPIRED)."""
    state = rules.effective_state(row["state"], row["expires_at"], row["reserved_until"], now)
    c = pb.Coupon(code=row["code"], campaign_id=str(row["campaign_id"]), profile_id=str(row["profile_id"]),
                  state=rules.STATE_TO_PB[state], source=row["source"], redeemed_order_id=row["redeemed_order_id"])
    _ts(c.issued_at, row["issued_at"])
    _ts(c.expires_at, row["expires_at"])
    _ts(c.redeemed_at, row["redeemed_at"])
    if state == rules.RESERVED:
        c.reserved_order_id = row["reserved_order_id"]
        _ts(c.reserved_until, row["reserved_until"])
    if state == rules.REVOKED:
        _ts(c.revoked_at, row["revoked_at"])
        c.revoke_reason, c.revoked_by = row["revoke_reason"], row["revoked_by"]
    return c


def _facts(row: asyncpg.Record) -> rules.CouponFacts:
    return rules.CouponFacts(profile_id=str(row["profile_id"]), state=row["state"], expires_at=row["expires_at"],
                             reserved_order_id=row["reserved_order_id"], reserved_until=row["reserved_until"],
                             redeemed_order_id=row["redeemed_order_id"])


def _encode_token(*parts: str) -> str:
    return base64.urlsafe_b64encode("|".join(parts).encode()).decode().rstrip("=")


def _decode_token(token: str, scope: str) -> tuple[datetime, str]:
    """(timestamp, id) of the last row of the previous page; INVALID_ARGUMENT for a token we did not
    issue for `scope`."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        got_scope, at, last = text.split("|", 2)
        if got_scope != scope or not last:
            raise ValueError(token)
        return datetime.fromisoformat(at), last
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token is not one this API returned for this listing",
                              code="invalid_page_token", field="page_token") from exc


def _page_size(size: int, default: int = 50, most: int = 500) -> int:
    if size < 0:
        raise InvalidArgument("page_size must be >= 0", code="invalid_page_size", field="page_size")
    return min(size or default, most)


# ---------------------------------------------------------------------------------------------- campaigns

async def upsert_campaign(conn: asyncpg.Connection, tenant: str, campaign: pb.CouponCampaign, *,
                          now: datetime) -> pb.CouponCampaign:
    """Create (empty id) or replace a campaign's definition; counters are the service's, never the caller's.
    Shortening valid_until (or setting it) pulls in the expiry of the coupons still open; a changed
    reminder lead time reschedules the reminders not yet sent."""
    rules.check_campaign(campaign)
    c = campaign
    valid_from = from_timestamp(c.valid_from) if c.HasField("valid_from") else None
    valid_until = from_timestamp(c.valid_until) if c.HasField("valid_until") else None
    values = [
        c.name.strip(), c.description, rules.DISCOUNT_FROM_PB[c.discount_type], c.percent_off, c.amount_off_minor,
        c.currency.upper(), c.min_order_minor, list(dict.fromkeys(x.strip() for x in c.categories if x.strip())),
        c.gift_item_id.strip(), valid_from, valid_until, c.validity_days, c.max_issued, c.per_profile_limit,
        c.remind_days_before_expiry, c.code_prefix.strip().upper(),
    ]
    async with conn.transaction():
        if not c.id:
            source = rules.SOURCE_FROM_PB.get(c.code_source, "generated")
            status = rules.STATUS_FROM_PB.get(c.status, "active")
            row = await conn.fetchrow(
                f"""
                INSERT INTO coupon_campaigns (tenant_id, id, {_CAMPAIGN_COLUMNS}, created_at, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
                        $21, $21)
                RETURNING *
                """,
                tenant, new_id(), *values, source, status, now,
            )
            return campaign_message(row)
        if parse_uuid(c.id) is None:
            raise InvalidArgument("campaign.id must be a UUID", code="invalid_campaign_id", field="campaign.id")
        old = await conn.fetchrow("SELECT * FROM coupon_campaigns WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
                                  tenant, c.id)
        if old is None:
            raise NotFound("no such coupon campaign", code="campaign_not_found")
        source = rules.SOURCE_FROM_PB.get(c.code_source, old["code_source"])
        if source != old["code_source"]:
            raise FailedPrecondition("code_source cannot change once a campaign exists",
                                     code="code_source_immutable", field="campaign.code_source")
        status = rules.STATUS_FROM_PB.get(c.status, old["status"])
        row = await conn.fetchrow(
            f"""
            UPDATE coupon_campaigns SET ({_CAMPAIGN_COLUMNS}, updated_at) =
                ($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
            WHERE tenant_id = $1 AND id = $2
            RETURNING *
            """,
            tenant, c.id, *values, source, status, now,
        )
        pulled_in = valid_until is not None and valid_until != old["valid_until"]
        if pulled_in:
            # the campaign window bounds every coupon's use: pull open coupons in (never push out)
            await conn.execute(
                """
                UPDATE coupons SET expires_at = $3
                WHERE tenant_id = $1 AND campaign_id = $2 AND state IN ('issued', 'reserved')
                  AND (expires_at IS NULL OR expires_at > $3)
                """,
                tenant, c.id, valid_until,
            )
        if pulled_in or c.remind_days_before_expiry != old["remind_days_before_expiry"]:
            await _reschedule_reminders(conn, tenant, c.id, c.remind_days_before_expiry)
        return campaign_message(row)


async def _reschedule_reminders(conn: asyncpg.Connection, tenant: str, campaign_id: str, days: int) -> None:
    """remind_at of the campaign's open, not yet reminded coupons per rules.remind_at with `days`."""
    await conn.execute(
        """
        WITH due AS (
            SELECT tenant_id, code, CASE WHEN $3 > 0 AND expires_at - make_interval(days => $3) > issued_at
                                         THEN expires_at - make_interval(days => $3) END AS at
            FROM coupons
            WHERE tenant_id = $1 AND campaign_id = $2 AND state IN ('issued', 'reserved') AND reminded_at IS NULL
        )
        UPDATE coupons c SET remind_at = due.at
        FROM due WHERE c.tenant_id = due.tenant_id AND c.code = due.code AND c.remind_at IS DISTINCT FROM due.at
        """,
        tenant, campaign_id, days,
    )


async def get_campaign(conn: asyncpg.Connection, tenant: str, campaign_id: str) -> pb.CouponCampaign:
    if parse_uuid(campaign_id) is None:
        raise InvalidArgument("campaign_id must be a UUID", code="invalid_campaign_id", field="campaign_id")
    row = await conn.fetchrow("SELECT * FROM coupon_campaigns WHERE tenant_id = $1 AND id = $2", tenant, campaign_id)
    if row is None:
        raise NotFound("no such coupon campaign", code="campaign_not_found")
    return campaign_message(row)


async def list_campaigns(conn: asyncpg.Connection, tenant: str, *, page_size: int, page_token: str
                         ) -> tuple[list[pb.CouponCampaign], str]:
    """One page of the tenant's campaigns, newest first, and the token of the next ('' at the end)."""
    size = _page_size(page_size)
    after_at, after_id = _decode_token(page_token, "campaigns") if page_token else (None, None)
    if after_id is not None and parse_uuid(after_id) is None:
        raise InvalidArgument("page_token is not one this API returned", code="invalid_page_token")
    rows = await conn.fetch(
        """
        SELECT * FROM coupon_campaigns
        WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
        ORDER BY created_at DESC, id DESC LIMIT $4
        """,
        tenant, after_at, after_id, size + 1,
    )
    token = ""
    if len(rows) > size:
        rows = rows[:size]
        token = _encode_token("campaigns", rows[-1]["created_at"].isoformat(), str(rows[-1]["id"]))
    return [campaign_message(r) for r in rows], token


async def add_codes(conn: asyncpg.Connection, tenant: str, campaign_id: str, codes: Sequence[str], *,
                    now: datetime) -> pb.AddCouponCodesResponse:
    """Load `codes` into a pool campaign; codes already anywhere in the tenant (or repeated) are skipped."""
    if parse_uuid(campaign_id) is None:
        raise InvalidArgument("campaign_id must be a UUID", code="invalid_campaign_id", field="campaign_id")
    if len(codes) > MAX_CODES_PER_CALL:
        raise InvalidArgument(f"at most {MAX_CODES_PER_CALL} codes per call", code="too_many_codes", field="codes")
    normalized = []
    for i, code in enumerate(codes):
        norm = rules.normalize_code(code)
        problem = rules.code_problem(norm)
        if problem:
            raise InvalidArgument(f"codes[{i}]: {problem}", code="invalid_code", field=f"codes[{i}]")
        normalized.append(norm)
    unique = sorted(set(normalized))  # one insert order for every caller: overlapping loads cannot deadlock
    async with conn.transaction():
        source = await conn.fetchval("SELECT code_source FROM coupon_campaigns WHERE tenant_id = $1 AND id = $2",
                                     tenant, campaign_id)
        if source is None:
            raise NotFound("no such coupon campaign", code="campaign_not_found")
        if source != "pool":
            raise FailedPrecondition("codes can only be added to a CODE_SOURCE_POOL campaign",
                                     code="not_a_pool_campaign")
        added = await conn.fetchval(
            """
            WITH ins AS (
                INSERT INTO coupons (tenant_id, code, campaign_id, state, pooled, added_at)
                SELECT $1, code, $2, 'available', true, $4 FROM unnest($3::text[]) AS code
                ON CONFLICT DO NOTHING RETURNING 1
            )
            SELECT count(*) FROM ins
            """,
            tenant, campaign_id, unique, now,
        )
        available = await conn.fetchval(
            """
            UPDATE coupon_campaigns SET pool_available = pool_available + $3
            WHERE tenant_id = $1 AND id = $2 RETURNING pool_available
            """,
            tenant, campaign_id, added,
        )
    return pb.AddCouponCodesResponse(added=added, skipped=len(codes) - added, pool_available=available)


# ---------------------------------------------------------------------------------------------- issuing

async def _lock(conn: asyncpg.Connection, *parts: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "|".join(parts))


async def issue(conn: asyncpg.Connection, tenant: str, campaign_id: str, profile_id: str, *, source: str, key: str,
                now: datetime, shards: int) -> pb.Coupon:
    """Give `profile_id` a coupon of `campaign_id` and emit coupon.issued, in one transaction (a
    savepoint in the caller's). A non-empty `key` makes it idempotent: the coupon first issued with
    that key (in this tenant) is returned again, even to concurrent callers.
    NOT_FOUND campaign_not_found; FAILED_PRECONDITION campaign_not_active (paused, ended, outside its
    window); RESOURCE_EXHAUSTED campaign_exhausted / profile_limit_reached / pool_empty."""
    if parse_uuid(campaign_id) is None:
        raise InvalidArgument("campaign_id must be a UUID", code="invalid_campaign_id", field="campaign_id")
    if parse_uuid(profile_id) is None:
        raise InvalidArgument("profile_id must be a UUID", code="invalid_profile_id", field="profile_id")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidArgument(f"idempotency_key: at most {MAX_KEY_LENGTH} characters", code="invalid_idempotency_key",
                              field="idempotency_key")
    async with conn.transaction():
        if key:
            await _lock(conn, tenant, "coupon-issue", key)
            row = await conn.fetchrow("SELECT * FROM coupons WHERE tenant_id = $1 AND issue_key = $2", tenant, key)
            if row is not None:
                return coupon_message(row, now)
        camp = await conn.fetchrow("SELECT * FROM coupon_campaigns WHERE tenant_id = $1 AND id = $2",
                                   tenant, campaign_id)
        if camp is None:
            raise NotFound("no such coupon campaign", code="campaign_not_found")
        _check_issuable(camp, now)
        if camp["max_issued"] and camp["issued_count"] >= camp["max_issued"]:
            raise ResourceExhausted("the campaign has issued all its coupons", code="campaign_exhausted")
        if camp["code_source"] == "pool" and camp["pool_available"] <= 0:
            raise ResourceExhausted("the campaign's code pool is empty", code="pool_empty")
        if camp["per_profile_limit"]:
            await _lock(conn, tenant, "coupon-holder", campaign_id, profile_id)
            held = await conn.fetchval(
                "SELECT count(*) FROM coupons WHERE tenant_id = $1 AND campaign_id = $2 AND profile_id = $3",
                tenant, campaign_id, profile_id)
            if held >= camp["per_profile_limit"]:
                raise ResourceExhausted("the profile holds as many coupons of this campaign as allowed",
                                        code="profile_limit_reached")
        expires_at = rules.coupon_expiry(now, camp["validity_days"], camp["valid_until"])
        remind = rules.remind_at(now, expires_at, camp["remind_days_before_expiry"])
        fields = (profile_id, source, key or None, now, expires_at, remind)
        if camp["code_source"] == "pool":
            # Claim the slot first: pool_available, exact under the row lock, says whether a code is
            # left, so concurrent callers that will fail on the limit never make others see "pool_empty".
            await _claim(conn, tenant, campaign_id, now, pooled=True)
            row = await conn.fetchrow(
                """
                WITH free AS MATERIALIZED (  -- evaluated once: inlined, a rescan would take more codes
                    SELECT code FROM coupons WHERE tenant_id = $1 AND campaign_id = $2 AND state = 'available'
                    LIMIT 1 FOR UPDATE SKIP LOCKED
                )
                UPDATE coupons c SET profile_id = $3, state = 'issued', source = $4, issue_key = $5, issued_at = $6,
                                     expires_at = $7, remind_at = $8
                FROM free WHERE c.tenant_id = $1 AND c.code = free.code AND c.state = 'available'
                RETURNING c.*
                """,
                tenant, campaign_id, *fields,
            )
            if row is None:  # the counter says otherwise; never hand out a code twice to make up for it
                raise ResourceExhausted("the campaign's code pool is empty", code="pool_empty")
        else:
            row = None
            for _ in range(CODE_ATTEMPTS):  # a collision is rare; each retry draws a fresh code
                row = await conn.fetchrow(
                    """
                    INSERT INTO coupons (tenant_id, code, campaign_id, profile_id, state, pooled, source, issue_key,
                                         issued_at, expires_at, remind_at, added_at)
                    VALUES ($1, $2, $3, $4, 'issued', false, $5, $6, $7, $8, $9, $7)
                    ON CONFLICT (tenant_id, code) DO NOTHING
                    RETURNING *
                    """,
                    tenant, rules.generate_code(camp["code_prefix"]), campaign_id, *fields,
                )
                if row is not None:
                    break
            if row is None:
                raise ResourceExhausted("no free code could be generated: use a longer or new prefix",
                                        code="code_space_exhausted")
            # last, so the campaign's row lock is held only for the end of the transaction
            await _claim(conn, tenant, campaign_id, now, pooled=False)
        payload = ev.CouponIssued(profile_id=profile_id, campaign_id=campaign_id, code=row["code"],
                                  discount_type=camp["discount_type"], percent_off=camp["percent_off"],
                                  amount_off_minor=camp["amount_off_minor"], currency=camp["currency"], source=source)
        _ts(payload.expires_at, expires_at)
        await publish(conn, [envelope(tenant, "coupon.issued", profile_id, payload, at=now)], shards)
        return coupon_message(row, now)


async def _claim(conn: asyncpg.Connection, tenant: str, campaign_id: str, now: datetime, *, pooled: bool) -> None:
    """Count one more coupon issued. The conditional UPDATE is the guard against over-issuing: it
    re-checks status, limit (and pool) on the latest row version and holds the row lock until commit."""
    counted = await conn.fetchval(
        """
        UPDATE coupon_campaigns
        SET issued_count = issued_count + 1, pool_available = pool_available - $3
        WHERE tenant_id = $1 AND id = $2 AND status = 'active' AND (max_issued = 0 OR issued_count < max_issued)
          AND pool_available >= $3
        RETURNING issued_count
        """,
        tenant, campaign_id, 1 if pooled else 0,
    )
    if counted is not None:
        return
    latest = await conn.fetchrow("SELECT * FROM coupon_campaigns WHERE tenant_id = $1 AND id = $2",
                                 tenant, campaign_id)
    _check_issuable(latest, now)
    if latest["max_issued"] and latest["issued_count"] >= latest["max_issued"]:
        raise ResourceExhausted("the campaign has issued all its coupons", code="campaign_exhausted")
    raise ResourceExhausted("the campaign's code pool is empty", code="pool_empty")


def _check_issuable(camp: asyncpg.Record, now: datetime) -> None:
    if camp["status"] != "active":
        raise FailedPrecondition(f"the campaign is {camp['status']}", code="campaign_not_active")
    if camp["valid_from"] is not None and now < camp["valid_from"]:
        raise FailedPrecondition("the campaign has not started", code="campaign_not_active")
    if camp["valid_until"] is not None and now >= camp["valid_until"]:
        raise FailedPrecondition("the campaign has ended", code="campaign_not_active")


# ---------------------------------------------------------------------------------------------- reading

async def get_coupon(conn: asyncpg.Connection, tenant: str, code: str, *, now: datetime) -> pb.Coupon:
    row = await conn.fetchrow(
        "SELECT * FROM coupons WHERE tenant_id = $1 AND code = $2 AND state NOT IN ('available', 'erased')",
        tenant, rules.normalize_code(code))
    if row is None:
        raise NotFound("no such coupon", code="coupon_not_found")
    return coupon_message(row, now)


# The state as of $2 (see rules.effective_state), so a state filter agrees with what is shown.
_EFFECTIVE = """
    CASE WHEN state = 'reserved' AND reserved_until <= $2 THEN
              CASE WHEN expires_at <= $2 THEN 'expired' ELSE 'issued' END
         WHEN state = 'issued' AND expires_at <= $2 THEN 'expired'
         ELSE state END
"""


async def list_coupons(conn: asyncpg.Connection, tenant: str, profile_id: str, *, states: Sequence[int],
                       page_size: int, page_token: str, now: datetime) -> tuple[list[pb.Coupon], str]:
    """One page of a profile's wallet, newest first, optionally only in `states` (as of `now`)."""
    if parse_uuid(profile_id) is None:
        raise InvalidArgument("profile_id must be a UUID", code="invalid_profile_id", field="profile_id")
    wanted = []
    for s in states:
        if s not in rules.STATE_FROM_PB:
            raise InvalidArgument("unknown coupon state", code="invalid_states", field="states")
        wanted.append(rules.STATE_FROM_PB[s])
    size = _page_size(page_size)
    after_at, after_code = _decode_token(page_token, f"coupons:{profile_id}") if page_token else (None, None)
    rows = await conn.fetch(
        f"""
        SELECT * FROM coupons
        WHERE tenant_id = $1 AND profile_id = $3
          AND (cardinality($4::text[]) = 0 OR ({_EFFECTIVE}) = ANY($4::text[]))
          AND ($5::timestamptz IS NULL OR (issued_at, code) < ($5, $6::text))
        ORDER BY issued_at DESC, code DESC LIMIT $7
        """,
        tenant, now, profile_id, wanted, after_at, after_code, size + 1,
    )
    token = ""
    if len(rows) > size:
        rows = rows[:size]
        token = _encode_token(f"coupons:{profile_id}", rows[-1]["issued_at"].isoformat(), rows[-1]["code"])
    return [coupon_message(r, now) for r in rows], token


async def validate(conn: asyncpg.Connection, tenant: str, code: str, profile_id: str, order: pb.Order, *,
                   now: datetime) -> pb.ValidateCouponResponse:
    """Whether `profile_id` can apply `code` to `order` now, and the discount; changes nothing.
    The coupon is returned only to its owner."""
    row = await conn.fetchrow(
        "SELECT * FROM coupons WHERE tenant_id = $1 AND code = $2 AND state NOT IN ('available', 'erased')",
        tenant, rules.normalize_code(code),
    )
    currency = (order.currency or "").upper()
    if row is None:
        return pb.ValidateCouponResponse(valid=False, reason=rules.NOT_FOUND, currency=currency)
    if str(row["profile_id"]) != profile_id:  # a stranger learns nothing more about the coupon
        return pb.ValidateCouponResponse(valid=False, reason=rules.NOT_OWNER, currency=currency)
    camp = await conn.fetchrow("SELECT * FROM coupon_campaigns WHERE tenant_id = $1 AND id = $2",
                               tenant, row["campaign_id"])
    reason = rules.usability(_facts(row), profile_id=profile_id, order_id=order.order_id, now=now,
                             valid_from=camp["valid_from"], valid_until=camp["valid_until"])
    campaign = campaign_message(camp)
    offer = rules.offer(campaign)
    response = pb.ValidateCouponResponse(coupon=coupon_message(row, now), discount_type=offer.discount_type,
                                         free_shipping=offer.free_shipping, gift_item_id=offer.gift_item_id)
    outcome = rules.order_discount(campaign, order)
    response.currency = outcome.currency
    if reason is None:
        reason = outcome.reason
    if reason is not None:
        response.valid = False
        response.reason = reason
        return response
    response.valid = True
    response.discount_minor = outcome.discount_minor
    return response


# ---------------------------------------------------------------------------------------------- using

async def _locked(conn: asyncpg.Connection, tenant: str, code: str) -> asyncpg.Record:
    row = await conn.fetchrow(_COUPON_FOR_UPDATE, tenant, rules.normalize_code(code))
    if row is None:
        raise NotFound("no such coupon", code="coupon_not_found")
    return row


def _refuse(reason: str) -> DomainError:
    if reason == rules.NOT_OWNER:
        return PermissionDenied("the coupon belongs to another profile", code=rules.NOT_OWNER)
    return FailedPrecondition(f"the coupon cannot be used: {reason}", code=reason)


def _usability(row: asyncpg.Record, profile_id: str, order_id: str, now: datetime) -> str | None:
    return rules.usability(_facts(row), profile_id=profile_id, order_id=order_id, now=now,
                           valid_from=row["campaign_valid_from"], valid_until=row["campaign_valid_until"])


async def reserve(conn: asyncpg.Connection, tenant: str, code: str, profile_id: str, order_id: str, *,
                  hold_seconds: int, now: datetime) -> pb.Coupon:
    """Hold the coupon for `order_id` until now + hold_seconds. Again for the same live hold: unchanged.
    NOT_FOUND coupon_not_found; PERMISSION_DENIED not_owner; FAILED_PRECONDITION with the reason."""
    async with conn.transaction():
        row = await _locked(conn, tenant, code)
        state = rules.effective_state(row["state"], row["expires_at"], row["reserved_until"], now)
        if str(row["profile_id"]) == profile_id and state == rules.RESERVED and row["reserved_order_id"] == order_id:
            return coupon_message(row, now)
        reason = _usability(row, profile_id, order_id, now)
        if reason is not None:
            raise _refuse(reason)
        row = await conn.fetchrow(
            """
            UPDATE coupons SET state = 'reserved', reserved_order_id = $3, reserved_until = $4
            WHERE tenant_id = $1 AND code = $2 RETURNING *
            """,
            tenant, row["code"], order_id, now + timedelta(seconds=hold_seconds),
        )
        return coupon_message(row, now)


@dataclass(frozen=True)
class Redemption:
    """The outcome of redeem: the coupon, whether this call redeemed it, and the discount recorded."""

    coupon: pb.Coupon
    redeemed_now: bool
    discount_minor: int
    currency: str


async def redeem(conn: asyncpg.Connection, tenant: str, code: str, profile_id: str, order_id: str,
                 discount_minor: int, currency: str, *, now: datetime, shards: int,
                 order: pb.Order | None = None) -> Redemption:
    """Consume the coupon for `order_id` (ISSUED, or RESERVED for this order) and emit coupon.redeemed.
    With `order`, the coupon must apply to it and the discount is computed here (`discount_minor` and
    `currency` are ignored). Redeeming again for the same order changes nothing (redeemed_now False).
    NOT_FOUND coupon_not_found; PERMISSION_DENIED not_owner; FAILED_PRECONDITION with the reason
    (redeemed for another order: "redeemed"; with an order, also its validation reason)."""
    async with conn.transaction():
        row = await _locked(conn, tenant, code)
        if str(row["profile_id"]) != profile_id:
            raise _refuse(rules.NOT_OWNER)
        if row["state"] == rules.REDEEMED and row["redeemed_order_id"] == order_id:
            return Redemption(coupon_message(row, now), False, row["discount_minor"], row["currency"])
        reason = _usability(row, profile_id, order_id, now)
        if reason is not None:
            raise _refuse(reason)
        if order is not None:
            camp = await conn.fetchrow("SELECT * FROM coupon_campaigns WHERE tenant_id = $1 AND id = $2",
                                       tenant, row["campaign_id"])
            outcome = rules.order_discount(campaign_message(camp), order)
            if outcome.reason is not None:
                raise _refuse(outcome.reason)
            discount_minor, currency = outcome.discount_minor, outcome.currency
        currency = (currency or "").upper()
        row = await conn.fetchrow(
            """
            UPDATE coupons SET state = 'redeemed', redeemed_order_id = $3, redeemed_at = $4, discount_minor = $5,
                               currency = $6, reserved_order_id = '', reserved_until = NULL
            WHERE tenant_id = $1 AND code = $2 RETURNING *
            """,
            tenant, row["code"], order_id, now, discount_minor, currency,
        )
        await conn.execute(
            "UPDATE coupon_campaigns SET redeemed_count = redeemed_count + 1 WHERE tenant_id = $1 AND id = $2",
            tenant, row["campaign_id"])
        payload = ev.CouponRedeemed(profile_id=profile_id, campaign_id=str(row["campaign_id"]), code=row["code"],
                                    order_id=order_id, discount_minor=discount_minor, currency=currency)
        await publish(conn, [envelope(tenant, "coupon.redeemed", profile_id, payload, at=now)], shards)
        return Redemption(coupon_message(row, now), True, discount_minor, currency)


async def release(conn: asyncpg.Connection, tenant: str, code: str, order_id: str, *, now: datetime,
                  profile_id: str = "") -> pb.Coupon:
    """End `order_id`'s hold: ISSUED again (EXPIRED if past expiry). Anything else (no hold, another
    order's hold, already redeemed) is left as it is and returned, so retries are harmless.
    With `profile_id`, only the owner may: PERMISSION_DENIED not_owner, whatever the coupon's state."""
    async with conn.transaction():
        row = await _locked(conn, tenant, code)
        if profile_id and str(row["profile_id"]) != profile_id:
            raise _refuse(rules.NOT_OWNER)
        if row["state"] == rules.RESERVED and row["reserved_order_id"] == order_id:
            row = await conn.fetchrow(
                """
                UPDATE coupons SET state = CASE WHEN expires_at <= $3 THEN 'expired' ELSE 'issued' END,
                                   reserved_order_id = '', reserved_until = NULL
                WHERE tenant_id = $1 AND code = $2 RETURNING *
                """,
                tenant, row["code"], now,
            )
        return coupon_message(row, now)


async def revoke(conn: asyncpg.Connection, tenant: str, code: str, *, reason: str, actor: str,
                 now: datetime) -> pb.Coupon:
    """Withdraw the coupon for good (ISSUED or RESERVED -> REVOKED, a hold ends), keeping reason and actor.
    A coupon already revoked is returned unchanged (its first reason kept), so retries are harmless.
    NOT_FOUND coupon_not_found; FAILED_PRECONDITION redeemed / expired."""
    async with conn.transaction():
        row = await _locked(conn, tenant, code)
        if row["state"] == rules.REVOKED:
            return coupon_message(row, now)
        refusal = rules.revoke_refusal(row["state"], row["expires_at"], row["reserved_until"], now)
        if refusal is not None:
            raise FailedPrecondition(f"the coupon cannot be revoked: {refusal}", code=refusal)
        row = await conn.fetchrow(
            """
            UPDATE coupons SET state = 'revoked', revoked_at = $3, revoke_reason = $4, revoked_by = $5,
                               reserved_order_id = '', reserved_until = NULL
            WHERE tenant_id = $1 AND code = $2 RETURNING *
            """,
            tenant, row["code"], now, reason, actor,
        )
        return coupon_message(row, now)


# ---------------------------------------------------------------------------------------------- identity events

async def redeem_for_order(conn: asyncpg.Connection, tenant: str, code: str, profile_id: str, order_id: str,
                           discount_minor: int, currency: str, *, now: datetime, shards: int) -> bool:
    """An order completed naming `code`: redeem it for `order_id` if it is `profile_id`'s and usable.
    True when redeemed now; False for unknown, foreign, unusable or already-redeemed codes (never raises
    for those). Runs in a savepoint of the caller's transaction."""
    code = rules.normalize_code(code or "")
    if parse_uuid(profile_id) is None or not order_id or rules.code_problem(code):
        return False
    try:
        outcome = await redeem(conn, tenant, code, profile_id, order_id, max(discount_minor, 0), currency,
                               now=now, shards=shards)
    except DomainError:
        return False
    return outcome.redeemed_now


async def merge_profile(conn: asyncpg.Connection, tenant: str, from_profile_id: str, into_profile_id: str) -> int:
    """profile.merged: `into_profile_id` owns `from_profile_id`'s coupons; how many moved."""
    result = await conn.execute("UPDATE coupons SET profile_id = $3 WHERE tenant_id = $1 AND profile_id = $2",
                                tenant, from_profile_id, into_profile_id)
    return int(result.split()[-1])


async def erase_profile(conn: asyncpg.Connection, tenant: str, profile_id: str) -> int:
    """profile.erased: the person's coupons are gone; pool codes they were given stay consumed
    (kept ownerless as 'erased', never issued again). How many coupons were removed."""
    async with conn.transaction():
        deleted = await conn.execute("DELETE FROM coupons WHERE tenant_id = $1 AND profile_id = $2 AND NOT pooled",
                                     tenant, profile_id)
        kept = await conn.execute(
            """
            UPDATE coupons SET profile_id = NULL, state = 'erased', source = '', issue_key = NULL, issued_at = NULL,
                               expires_at = NULL, remind_at = NULL, reminded_at = NULL, reserved_order_id = '',
                               reserved_until = NULL, redeemed_order_id = '', redeemed_at = NULL, discount_minor = 0,
                               currency = '', revoked_at = NULL, revoke_reason = '', revoked_by = ''
            WHERE tenant_id = $1 AND profile_id = $2 AND pooled
            """,
            tenant, profile_id,
        )
    return int(deleted.split()[-1]) + int(kept.split()[-1])
