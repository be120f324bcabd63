"""Programs: validation of a program as saved, its tiers, and the points lifecycle it implies
(when credited points become available and when they expire)."""

from __future__ import annotations

import calendar
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.errors import InvalidArgument

TRIGGER_EVENTS = {
    "order": ("Order Completed",),
    "signup": ("Signed Up",),
    "review": ("Product Reviewed",),
    "referral_share": ("Product Shared", "Cart Shared"),
}
# triggers not driven by a behaviour event name
SCHEDULED_TRIGGERS = ("birthday",)


def _bad(detail: str, field: str, code: str = "invalid_program") -> InvalidArgument:
    return InvalidArgument(detail, code=code, field=field)


def zone(program: pb.Program) -> ZoneInfo:
    try:
        return ZoneInfo(program.time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise _bad(f"unknown time zone {program.time_zone!r}", "time_zone", "invalid_time_zone") from None


def validate(program: pb.Program) -> pb.Program:
    """A copy of `program` with defaults filled in (tiers sorted by rank, multipliers 1.0, enum
    defaults); InvalidArgument naming the field on anything inconsistent."""
    p = pb.Program()
    p.CopyFrom(program)
    if not p.name.strip():
        raise _bad("name is required", "name")
    if len(p.currency) != 3 or not p.currency.isalpha():
        raise _bad("currency must be an ISO 4217 code, e.g. EUR", "currency")
    p.currency = p.currency.upper()
    zone(p)
    for field in ("points_validity_days", "pending_days", "expiry_reminder_days", "tier_window_months"):
        if getattr(p, field) < 0:
            raise _bad(f"{field} must be >= 0", field)
    if p.point_value_minor < 0:
        raise _bad("point_value_minor must be >= 0", "point_value_minor")
    if p.expiry_mode == pb.EXPIRY_MODE_UNSPECIFIED:
        p.expiry_mode = pb.EXPIRY_MODE_AFTER_DAYS
    if p.tier_basis == pb.TIER_BASIS_UNSPECIFIED:
        p.tier_basis = pb.TIER_BASIS_POINTS
    if p.downgrade_policy == pb.DOWNGRADE_POLICY_UNSPECIFIED:
        p.downgrade_policy = pb.DOWNGRADE_POLICY_PERIOD_END
    _validate_tiers(p)
    _validate_rules(p)
    return p


def _validate_tiers(p: pb.Program) -> None:
    if not p.tiers:
        p.tiers.add(code="base", name="Member", rank=0)
    tiers = sorted(p.tiers, key=lambda t: t.rank)
    codes = set()
    for i, t in enumerate(tiers):
        f = f"tiers[{i}]"
        if not t.code.strip():
            raise _bad("every tier needs a code", f"{f}.code")
        if t.code in codes:
            raise _bad(f"tier code {t.code!r} is used twice", f"{f}.code")
        codes.add(t.code)
        if not t.name:
            t.name = t.code
        if t.points_multiplier < 0 or t.discount_percent < 0 or t.discount_percent > 100:
            raise _bad("points_multiplier must be >= 0 and discount_percent 0..100", f)
        if t.points_multiplier == 0:
            t.points_multiplier = 1.0
    if tiers[0].rank != 0 or any(threshold(p, tiers[0])):
        raise _bad("the lowest tier must have rank 0 and no threshold (every member starts there)", "tiers")
    for lower, higher in itertools.pairwise(tiers):
        if higher.rank == lower.rank:
            raise _bad(f"tiers {lower.code!r} and {higher.code!r} have the same rank", "tiers")
        if threshold(p, higher)[0] <= threshold(p, lower)[0]:
            raise _bad(f"tier {higher.code!r} must need more than {lower.code!r}", "tiers")
    del p.tiers[:]
    p.tiers.extend(tiers)


def _validate_rules(p: pb.Program) -> None:
    ids = set()
    for i, r in enumerate(p.earn_rules):
        f = f"earn_rules[{i}]"
        if not r.id:
            r.id = f"rule-{i + 1}"
        if r.id in ids:
            raise _bad(f"earn rule id {r.id!r} is used twice", f"{f}.id")
        ids.add(r.id)
        if not r.trigger.strip():
            raise _bad("trigger is required", f"{f}.trigger")
        if r.points < 0 or r.points_per_unit < 0 or r.unit_minor < 0 or r.cap_points < 0 or r.cap_window_days < 0:
            raise _bad("points, points_per_unit, unit_minor and caps must be >= 0", f)
        if r.points_per_unit and not r.unit_minor:
            raise _bad("unit_minor is required with points_per_unit", f"{f}.unit_minor")
        if r.multiplier < 0 or any(m < 0 for m in (*r.category_multipliers.values(), *r.item_multipliers.values())):
            raise _bad("multipliers must be >= 0", f)
        if r.multiplier == 0:
            r.multiplier = 1.0
        if r.boost and r.multiplier == 1.0:
            raise _bad("a boost rule needs a multiplier other than 1", f"{f}.multiplier")
        if not r.boost and not (r.points or r.points_per_unit):
            raise _bad("a rule must earn points (points or points_per_unit) unless it is a boost", f)
        if r.HasField("valid_from") and r.HasField("valid_until") and \
                r.valid_until.ToDatetime() <= r.valid_from.ToDatetime():
            raise _bad("valid_until must be after valid_from", f"{f}.valid_until")


# --- tiers -------------------------------------------------------------------------------------

BASIS_NAMES = {pb.TIER_BASIS_POINTS: "points", pb.TIER_BASIS_SPEND: "spend", pb.TIER_BASIS_ORDERS: "orders"}


@dataclass(frozen=True)
class Progress:
    """A member's qualifying totals over the tier window."""

    points: int = 0
    spend_minor: int = 0
    orders: int = 0

    def measure(self, program: pb.Program) -> int:
        if program.tier_basis == pb.TIER_BASIS_SPEND:
            return self.spend_minor
        if program.tier_basis == pb.TIER_BASIS_ORDERS:
            return self.orders
        return self.points


def threshold(program: pb.Program, tier: pb.Tier) -> tuple[int]:
    if program.tier_basis == pb.TIER_BASIS_SPEND:
        return (tier.threshold_spend_minor,)
    if program.tier_basis == pb.TIER_BASIS_ORDERS:
        return (tier.threshold_orders,)
    return (tier.threshold_points,)


def base_tier(program: pb.Program) -> pb.Tier:
    return program.tiers[0]


def tier_by_code(program: pb.Program, code: str) -> pb.Tier:
    for t in program.tiers:
        if t.code == code:
            return t
    return base_tier(program)  # a tier removed from the program: the member counts as base until re-evaluated


def qualified_tier(program: pb.Program, progress: Progress) -> pb.Tier:
    """The highest tier whose threshold `progress` reaches."""
    value = progress.measure(program)
    best = base_tier(program)
    for t in program.tiers:
        if value >= threshold(program, t)[0]:
            best = t
    return best


def next_tier(program: pb.Program, current: pb.Tier) -> pb.Tier | None:
    for t in program.tiers:
        if t.rank > current.rank:
            return t
    return None


def window_start(program: pb.Program, now: datetime) -> datetime | None:
    """Start of the rolling qualification window ending now (None: lifetime)."""
    if program.tier_window_months <= 0:
        return None
    return add_months(now, -program.tier_window_months)


def review_at(program: pb.Program, since: datetime) -> datetime | None:
    """When a tier reached at `since` is reviewed for a downgrade (None: never)."""
    if program.downgrade_policy != pb.DOWNGRADE_POLICY_PERIOD_END or program.tier_window_months <= 0:
        return None
    return add_months(since, program.tier_window_months)


def add_months(dt: datetime, months: int) -> datetime:
    total = dt.year * 12 + (dt.month - 1) + months
    year, month = divmod(total, 12)
    day = min(dt.day, calendar.monthrange(year, month + 1)[1])
    return dt.replace(year=year, month=month + 1, day=day)


# --- the points lifecycle ------------------------------------------------------------------------

def available_at(program: pb.Program, now: datetime, *, order: bool) -> datetime:
    """Order points wait out the return window; other credits are available at once."""
    return now + timedelta(days=program.pending_days) if order and program.pending_days else now


def expires_at(program: pb.Program, available: datetime) -> datetime | None:
    """When points that become available at `available` expire (None: never)."""
    mode = program.expiry_mode
    days = program.points_validity_days
    if mode == pb.EXPIRY_MODE_NEVER or (mode in (pb.EXPIRY_MODE_AFTER_DAYS, pb.EXPIRY_MODE_UNSPECIFIED) and not days):
        return None
    end = available + timedelta(days=days)
    if mode in (pb.EXPIRY_MODE_AFTER_DAYS, pb.EXPIRY_MODE_UNSPECIFIED):
        return end
    local = end.astimezone(zone(program))
    if mode == pb.EXPIRY_MODE_END_OF_MONTH:
        first_next = add_months(local.replace(day=1, hour=0, minute=0, second=0, microsecond=0), 1)
    else:
        first_next = local.replace(year=local.year + 1, month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    return first_next.astimezone(end.tzinfo)
