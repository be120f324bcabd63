"""Coupon rules, free of I/O: codes, expiry, the state a coupon is really in at a moment, whether it
can be used, and the discount a campaign gives an order.

States as stored: `available` (a pool code not issued yet), `issued`, `reserved`, `redeemed`,
`expired`, `revoked` and `erased` (a pool code whose owner was erased: it stays consumed). Only
issued..revoked are ever shown to callers.

Rules worth knowing (a reviewer's checklist):
- Codes are case-insensitive: stored and looked up upper-cased, surrounding whitespace dropped.
- A coupon expires at issued_at + validity_days, or at the campaign's valid_until, the earlier when
  both are set (never when neither is).
- A reservation that has lapsed (reserved_until <= now) counts as ISSUED (or EXPIRED past expiry).
  A live reservation is honoured to its end even if the coupon's expiry passes meanwhile, so a
  checkout that started in time can still complete.
- Ownership is checked before anything else, so a stranger's probe learns nothing about the state.
- Revoking is final and only for coupons still usable (ISSUED, or RESERVED: the hold ends); a
  REDEEMED or EXPIRED coupon is past that. A revoked coupon validates as "revoked" and is never
  reserved or redeemed again.
- Discounts: percent_off of the eligible amount rounded half up; amount_off capped at the eligible
  amount; free shipping and gifts are valid with a 0 discount. The eligible amount is the order total
  (or the sum of its lines when the total is 0) without a category filter, else the sum of the lines
  in those categories (capped at the order total when it is given).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.errors import InvalidArgument

# No 0/O, 1/I/L: codes are read from screens and paper and typed by people.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
MAX_CODE_LENGTH = 64
MAX_PREFIX_LENGTH = 24
DEFAULT_HOLD_SECONDS = 900
MAX_HOLD_SECONDS = 7 * 86400

# stored state names
AVAILABLE, ISSUED, RESERVED, REDEEMED, EXPIRED, REVOKED, ERASED = (
    "available", "issued", "reserved", "redeemed", "expired", "revoked", "erased")
HIDDEN_STATES = (AVAILABLE, ERASED)

STATE_TO_PB = {ISSUED: pb.COUPON_STATE_ISSUED, RESERVED: pb.COUPON_STATE_RESERVED,
               REDEEMED: pb.COUPON_STATE_REDEEMED, EXPIRED: pb.COUPON_STATE_EXPIRED,
               REVOKED: pb.COUPON_STATE_REVOKED}
STATE_FROM_PB = {v: k for k, v in STATE_TO_PB.items()}

DISCOUNT_TO_PB = {"percent_off": pb.DISCOUNT_TYPE_PERCENT_OFF, "amount_off": pb.DISCOUNT_TYPE_AMOUNT_OFF,
                  "free_shipping": pb.DISCOUNT_TYPE_FREE_SHIPPING, "gift": pb.DISCOUNT_TYPE_GIFT}
DISCOUNT_FROM_PB = {v: k for k, v in DISCOUNT_TO_PB.items()}
STATUS_TO_PB = {"active": pb.CAMPAIGN_STATUS_ACTIVE, "paused": pb.CAMPAIGN_STATUS_PAUSED,
                "ended": pb.CAMPAIGN_STATUS_ENDED}
STATUS_FROM_PB = {v: k for k, v in STATUS_TO_PB.items()}
SOURCE_TO_PB = {"generated": pb.CODE_SOURCE_GENERATED, "pool": pb.CODE_SOURCE_POOL}
SOURCE_FROM_PB = {v: k for k, v in SOURCE_TO_PB.items()}

# Stable reason codes (ValidateCouponResponse.reason and the `code` of FAILED_PRECONDITION errors).
NOT_FOUND = "not_found"
NOT_OWNER = "not_owner"
NOT_STARTED = "not_started"
R_EXPIRED = "expired"
R_REDEEMED = "redeemed"
R_RESERVED = "reserved"
R_REVOKED = "revoked"
MIN_ORDER_NOT_MET = "min_order_not_met"
NO_ELIGIBLE_LINES = "no_eligible_lines"
CURRENCY_MISMATCH = "currency_mismatch"

MAX_REVOKE_REASON_LENGTH = 500
MAX_ACTOR_LENGTH = 200

_CODE_RE = re.compile(r"^[A-Z0-9][A-Z0-9_\-.]*$")
_PREFIX_RE = re.compile(r"^[A-Z0-9_\-.]*$")


def normalize_code(code: str) -> str:
    """The stored form of a code: surrounding whitespace dropped, upper-cased."""
    return code.strip().upper()


def code_problem(code: str) -> str | None:
    """Why a (normalized) code cannot be stored, or None: 1..64 of A-Z 0-9 _ - ., starting alphanumeric."""
    if not code:
        return "empty"
    if len(code) > MAX_CODE_LENGTH:
        return f"longer than {MAX_CODE_LENGTH} characters"
    if not _CODE_RE.match(code):
        return "only letters, digits, '_', '-' and '.' are allowed, starting with a letter or digit"
    return None


def generate_code(prefix: str, *, length: int = CODE_LENGTH, choice: Callable[[str], str] = secrets.choice) -> str:
    """`prefix` + `length` random characters of the unambiguous ALPHABET (31^8 ~ 8.5e11 codes)."""
    return prefix + "".join(choice(ALPHABET) for _ in range(length))


def coupon_expiry(issued_at: datetime, validity_days: int, valid_until: datetime | None) -> datetime | None:
    """When a coupon issued at `issued_at` expires: issued_at + validity_days or the campaign's end,
    the earlier when both apply; None when neither does."""
    candidates = []
    if validity_days > 0:
        candidates.append(issued_at + timedelta(days=validity_days))
    if valid_until is not None:
        candidates.append(valid_until)
    return min(candidates) if candidates else None


def remind_at(issued_at: datetime, expires_at: datetime | None, remind_days: int) -> datetime | None:
    """When coupon.expiring is due: remind_days before expiry. None without a reminder, without an
    expiry, or when that moment is not after the issue (no "expiring soon" the minute it is given)."""
    if remind_days <= 0 or expires_at is None:
        return None
    at = expires_at - timedelta(days=remind_days)
    return at if at > issued_at else None


@dataclass(frozen=True)
class CouponFacts:
    """What the rules need to know about one stored coupon."""

    profile_id: str
    state: str
    expires_at: datetime | None
    reserved_order_id: str = ""
    reserved_until: datetime | None = None
    redeemed_order_id: str = ""


def effective_state(state: str, expires_at: datetime | None, reserved_until: datetime | None, now: datetime) -> str:
    """The state a coupon is in at `now`: lapsed reservations are ISSUED again, and ISSUED past its
    expiry is EXPIRED, whether or not the background job has written that yet."""
    if state == RESERVED:
        if reserved_until is not None and reserved_until > now:
            return RESERVED
        state = ISSUED
    if state == ISSUED and expires_at is not None and expires_at <= now:
        return EXPIRED
    return state


def usability(coupon: CouponFacts, *, profile_id: str, order_id: str, now: datetime,
              valid_from: datetime | None, valid_until: datetime | None) -> str | None:
    """Why `profile_id` cannot use `coupon` for `order_id` at `now` (a reason code), or None if it can.
    A coupon REDEEMED for this very order is "redeemed" here: callers wanting idempotency check first."""
    if coupon.profile_id != profile_id:
        return NOT_OWNER
    state = effective_state(coupon.state, coupon.expires_at, coupon.reserved_until, now)
    if state == REVOKED:
        return R_REVOKED
    if state == REDEEMED:
        return R_REDEEMED
    if state == RESERVED:
        if not order_id or coupon.reserved_order_id != order_id:
            return R_RESERVED
        held = True  # honoured to the end of the hold, even past expiry
    else:
        held = False
    if state == EXPIRED or (not held and valid_until is not None and valid_until <= now):
        return R_EXPIRED
    if valid_from is not None and now < valid_from:
        return NOT_STARTED
    return None


def revoke_refusal(state: str, expires_at: datetime | None, reserved_until: datetime | None,
                   now: datetime) -> str | None:
    """Why a coupon stored in `state` cannot be revoked at `now` ("redeemed", "expired"), or None.
    An already REVOKED coupon is None: revoking again is a no-op the caller handles."""
    current = effective_state(state, expires_at, reserved_until, now)
    if current == REDEEMED:
        return R_REDEEMED
    if current == EXPIRED:
        return R_EXPIRED
    return None


def check_revoke(reason: str, actor: str) -> tuple[str, str]:
    """(reason, actor) stripped, or INVALID_ARGUMENT naming the one that is missing or too long."""
    reason, actor = reason.strip(), actor.strip()
    for field, value, most in (("reason", reason, MAX_REVOKE_REASON_LENGTH), ("actor", actor, MAX_ACTOR_LENGTH)):
        if not value:
            raise InvalidArgument(f"{field} is required", code=f"invalid_{field}", field=field)
        if len(value) > most:
            raise InvalidArgument(f"{field}: at most {most} characters", code=f"invalid_{field}", field=field)
    return reason, actor


@dataclass(frozen=True)
class Offer:
    """What a campaign's coupon gives, as checkout shows it."""

    discount_type: int
    free_shipping: bool
    gift_item_id: str


def offer(campaign: pb.CouponCampaign) -> Offer:
    """The kind of benefit of `campaign`: its discount type, free shipping, the gift item of a gift."""
    gift = campaign.gift_item_id if campaign.discount_type == pb.DISCOUNT_TYPE_GIFT else ""
    return Offer(campaign.discount_type, campaign.discount_type == pb.DISCOUNT_TYPE_FREE_SHIPPING, gift)


def check_order(order: pb.Order, field: str = "order") -> None:
    """INVALID_ARGUMENT when an order carries negative amounts."""
    if order.total_minor < 0 or any(line.amount_minor < 0 for line in order.lines):
        raise InvalidArgument("order amounts cannot be negative", code="invalid_order", field=field)


@dataclass(frozen=True)
class Discount:
    """The outcome for one order: `reason` None when the coupon applies."""

    reason: str | None
    discount_minor: int
    currency: str


def eligible_amount(order: pb.Order, categories: Sequence[str]) -> int | None:
    """The part of `order` a campaign limited to `categories` (empty = all) applies to, minor units;
    None when a category filter matches no line."""
    total = max(order.total_minor, 0)
    wanted = {c.strip().casefold() for c in categories if c.strip()}
    if not wanted:
        return total if total > 0 or not order.lines else sum(max(line.amount_minor, 0) for line in order.lines)
    matched = [line for line in order.lines if line.category.strip().casefold() in wanted]
    if not matched:
        return None
    amount = sum(max(line.amount_minor, 0) for line in matched)
    return min(amount, total) if total > 0 else amount


def order_discount(campaign: pb.CouponCampaign, order: pb.Order) -> Discount:
    """What `campaign` takes off `order` (or why it does not apply to it)."""
    currency = (order.currency or campaign.currency).upper()
    money_matters = campaign.discount_type == pb.DISCOUNT_TYPE_AMOUNT_OFF or campaign.min_order_minor > 0
    if money_matters and campaign.currency and order.currency and campaign.currency.upper() != order.currency.upper():
        return Discount(CURRENCY_MISMATCH, 0, currency)
    eligible = eligible_amount(order, campaign.categories)
    if eligible is None:
        return Discount(NO_ELIGIBLE_LINES, 0, currency)
    if eligible < campaign.min_order_minor:
        return Discount(MIN_ORDER_NOT_MET, 0, currency)
    if campaign.discount_type == pb.DISCOUNT_TYPE_PERCENT_OFF:
        amount = min((eligible * campaign.percent_off + 50) // 100, eligible)
    elif campaign.discount_type == pb.DISCOUNT_TYPE_AMOUNT_OFF:
        amount = min(campaign.amount_off_minor, eligible)
    else:  # free shipping, gift: valid, nothing off the goods
        amount = 0
    return Discount(None, amount, currency)


def _bad(detail: str, field: str) -> InvalidArgument:
    return InvalidArgument(detail, code=f"invalid_{field}", field=f"campaign.{field}")


def check_campaign(c: pb.CouponCampaign) -> None:
    """INVALID_ARGUMENT naming the first field of `c` that makes no sense."""
    if not c.name.strip():
        raise _bad("name is required", "name")
    if c.discount_type not in DISCOUNT_FROM_PB:
        raise _bad("discount_type is required", "discount_type")
    if c.discount_type == pb.DISCOUNT_TYPE_PERCENT_OFF and not 1 <= c.percent_off <= 100:
        raise _bad("percent_off must be 1..100", "percent_off")
    if c.discount_type != pb.DISCOUNT_TYPE_PERCENT_OFF and c.percent_off:
        raise _bad("percent_off is only for PERCENT_OFF campaigns", "percent_off")
    if c.discount_type == pb.DISCOUNT_TYPE_AMOUNT_OFF and c.amount_off_minor <= 0:
        raise _bad("amount_off_minor must be > 0", "amount_off_minor")
    if c.discount_type != pb.DISCOUNT_TYPE_AMOUNT_OFF and c.amount_off_minor:
        raise _bad("amount_off_minor is only for AMOUNT_OFF campaigns", "amount_off_minor")
    if c.discount_type == pb.DISCOUNT_TYPE_GIFT and not c.gift_item_id.strip():
        raise _bad("gift_item_id is required for GIFT campaigns", "gift_item_id")
    if c.min_order_minor < 0:
        raise _bad("min_order_minor must be >= 0", "min_order_minor")
    if (c.discount_type == pb.DISCOUNT_TYPE_AMOUNT_OFF or c.min_order_minor > 0) and not re.fullmatch(
            r"[A-Za-z]{3}", c.currency):
        raise _bad("currency (ISO 4217) is required with amount_off_minor or min_order_minor", "currency")
    if c.currency and not re.fullmatch(r"[A-Za-z]{3}", c.currency):
        raise _bad("currency must be an ISO 4217 code", "currency")
    if c.HasField("valid_from") and c.HasField("valid_until") and c.valid_until.ToNanoseconds() <= (
            c.valid_from.ToNanoseconds()):
        raise _bad("valid_until must be after valid_from", "valid_until")
    for field in ("validity_days", "max_issued", "per_profile_limit", "remind_days_before_expiry"):
        if getattr(c, field) < 0:
            raise _bad(f"{field} must be >= 0", field)
    if c.validity_days > 36500:
        raise _bad("validity_days must be at most 36500", "validity_days")
    prefix = c.code_prefix.strip().upper()
    if len(prefix) > MAX_PREFIX_LENGTH or not _PREFIX_RE.match(prefix) or (prefix and not prefix[0].isalnum()):
        raise _bad(f"code_prefix: at most {MAX_PREFIX_LENGTH} of A-Z 0-9 _ - ., starting alphanumeric",
                   "code_prefix")
    if c.status not in (pb.CAMPAIGN_STATUS_UNSPECIFIED, *STATUS_FROM_PB):
        raise _bad("unknown status", "status")
    if c.code_source not in (pb.CODE_SOURCE_UNSPECIFIED, *SOURCE_FROM_PB):
        raise _bad("unknown code_source", "code_source")
    if c.code_source == pb.CODE_SOURCE_POOL and prefix:
        raise _bad("code_prefix is for generated codes, not pools", "code_prefix")
