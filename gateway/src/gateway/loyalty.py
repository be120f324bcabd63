"""Loyalty API <-> loyalty proto: request models to messages, messages to read models. Enums travel as
lower-case strings ("percent_off", "issued", "pending"); unset strings, ids and times become null."""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from gateway.profiles import time_field
from gateway.schemas.coupons import CampaignRead, CampaignWrite, CouponRead, RedeemResult, ValidationResult
from gateway.schemas.loyalty import (
    BalanceRead,
    BenefitRead,
    BenefitWrite,
    EarnRuleRead,
    EarnRuleWrite,
    LedgerEntryRead,
    LotConsumptionRead,
    MemberRead,
    MemberTierRead,
    NextTierRead,
    OrderIn,
    PeriodTotalsRead,
    ProgramRead,
    ProgramReport,
    ProgramWrite,
    TierCountRead,
    TierRead,
    TierWrite,
)
from gateway.schemas.rewards import RedemptionRead, RewardRead, RewardWrite
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.timestamps import set_timestamp


class EnumNames:
    """Two-way map between a proto enum and lower-case names without the enum's prefix
    (DISCOUNT_TYPE_PERCENT_OFF <-> "percent_off"); `unspecified` names the zero value on the way out."""

    def __init__(self, enum: EnumTypeWrapper, prefix: str, *, unspecified: str = "unspecified") -> None:
        self._name = {v.number: v.name.removeprefix(prefix).lower() for v in enum.DESCRIPTOR.values}
        self._name[0] = unspecified
        self._value = {name: number for number, name in self._name.items() if number}

    def name(self, value: int) -> str:
        return self._name.get(value, self._name[0])  # a value newer than these stubs reads as the default

    def value(self, name: str) -> int:
        return self._value[name]


EXPIRY_MODE = EnumNames(pb.ExpiryMode, "EXPIRY_MODE_", unspecified="after_days")
TIER_BASIS = EnumNames(pb.TierBasis, "TIER_BASIS_", unspecified="points")
DOWNGRADE_POLICY = EnumNames(pb.DowngradePolicy, "DOWNGRADE_POLICY_", unspecified="period_end")
MEMBER_STATUS = EnumNames(pb.MemberStatus, "MEMBER_STATUS_")
LEDGER_KIND = EnumNames(pb.LedgerEntryKind, "LEDGER_ENTRY_KIND_")
DISCOUNT_TYPE = EnumNames(pb.DiscountType, "DISCOUNT_TYPE_")
CAMPAIGN_STATUS = EnumNames(pb.CampaignStatus, "CAMPAIGN_STATUS_")
CODE_SOURCE = EnumNames(pb.CodeSource, "CODE_SOURCE_", unspecified="generated")
COUPON_STATE = EnumNames(pb.CouponState, "COUPON_STATE_")
REWARD_KIND = EnumNames(pb.RewardKind, "REWARD_KIND_")
REDEMPTION_STATUS = EnumNames(pb.RedemptionStatus, "REDEMPTION_STATUS_")


def json_text(value: dict[str, Any] | None) -> str:
    """A JSON object as the text of a *_json proto field ("" for none)."""
    return orjson.dumps(value).decode() if value else ""


def _object(text: str) -> dict[str, Any]:
    """A JSON-object field as a dict ({} when empty or not an object)."""
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _or_none(value: str) -> str | None:
    return value or None


# ---- requests -------------------------------------------------------------------------------------


def order_pb(order: OrderIn) -> pb.Order:
    message = pb.Order(
        order_id=order.order_id,
        total_minor=order.total_minor,
        currency=order.currency,
        lines=[
            pb.OrderLine(item_id=x.item_id, category=x.category, quantity=x.quantity, amount_minor=x.amount_minor)
            for x in order.lines
        ],
        channel=order.channel,
        store_id=order.store_id,
    )
    if order.ordered_at is not None:
        set_timestamp(message.ordered_at, order.ordered_at)
    return message


def _benefit_pb(b: BenefitWrite) -> pb.Benefit:
    return pb.Benefit(code=b.code, name=b.name, description=b.description, config_json=json_text(b.config))


def _tier_pb(t: TierWrite) -> pb.Tier:
    return pb.Tier(
        code=t.code,
        name=t.name,
        rank=t.rank,
        threshold_points=t.threshold_points,
        threshold_spend_minor=t.threshold_spend_minor,
        threshold_orders=t.threshold_orders,
        points_multiplier=t.points_multiplier,
        discount_percent=t.discount_percent,
        free_shipping=t.free_shipping,
        benefits=[_benefit_pb(b) for b in t.benefits],
    )


def _rule_pb(r: EarnRuleWrite) -> pb.EarnRule:
    rule = pb.EarnRule(
        id=r.id,
        name=r.name,
        trigger=r.trigger,
        points=r.points,
        points_per_unit=r.points_per_unit,
        unit_minor=r.unit_minor,
        categories=r.categories,
        multiplier=r.multiplier,
        category_multipliers=r.category_multipliers,
        item_multipliers=r.item_multipliers,
        cap_points=r.cap_points,
        cap_window_days=r.cap_window_days,
        enabled=r.enabled,
        boost=r.boost,
        not_qualifying=r.not_qualifying,
        conditions_json=json_text(r.conditions),
    )
    if r.valid_from is not None:
        set_timestamp(rule.valid_from, r.valid_from)
    if r.valid_until is not None:
        set_timestamp(rule.valid_until, r.valid_until)
    return rule


def program_pb(program_id: str, p: ProgramWrite) -> pb.Program:
    return pb.Program(
        id=program_id,
        name=p.name,
        currency=p.currency,
        tiers=[_tier_pb(t) for t in p.tiers],
        earn_rules=[_rule_pb(r) for r in p.earn_rules],
        points_validity_days=p.points_validity_days,
        pending_days=p.pending_days,
        expiry_reminder_days=p.expiry_reminder_days,
        tier_window_months=p.tier_window_months,
        enabled=p.enabled,
        expiry_mode=EXPIRY_MODE.value(p.expiry_mode),
        tier_basis=TIER_BASIS.value(p.tier_basis),
        downgrade_policy=DOWNGRADE_POLICY.value(p.downgrade_policy),
        auto_enroll=p.auto_enroll,
        enroll_on_order=p.enroll_on_order,
        point_value_minor=p.point_value_minor,
        time_zone=p.time_zone,
    )


def campaign_pb(campaign_id: str, c: CampaignWrite) -> pb.CouponCampaign:
    message = pb.CouponCampaign(
        id=campaign_id,
        name=c.name,
        description=c.description,
        discount_type=DISCOUNT_TYPE.value(c.discount_type),
        percent_off=c.percent_off,
        amount_off_minor=c.amount_off_minor,
        currency=c.currency or "",
        min_order_minor=c.min_order_minor,
        categories=c.categories,
        gift_item_id=c.gift_item_id,
        validity_days=c.validity_days,
        max_issued=c.max_issued,
        per_profile_limit=c.per_profile_limit,
        remind_days_before_expiry=c.remind_days_before_expiry,
        code_prefix=c.code_prefix,
        status=CAMPAIGN_STATUS.value(c.status),
        code_source=CODE_SOURCE.value(c.code_source),
    )
    if c.valid_from is not None:
        set_timestamp(message.valid_from, c.valid_from)
    if c.valid_until is not None:
        set_timestamp(message.valid_until, c.valid_until)
    return message


def reward_pb(program_id: str, reward_id: str, r: RewardWrite) -> pb.Reward:
    return pb.Reward(
        id=reward_id,
        program_id=program_id,
        name=r.name,
        description=r.description,
        image_url=str(r.image_url) if r.image_url else "",
        kind=REWARD_KIND.value(r.kind),
        points_cost=r.points_cost,
        stock=r.stock,
        unlimited_stock=r.unlimited_stock,
        min_tier_code=r.min_tier_code or "",
        coupon_campaign_id=r.coupon_campaign_id or "",
        enabled=r.enabled,
    )


# ---- responses ------------------------------------------------------------------------------------


def _benefit_read(b: pb.Benefit) -> BenefitRead:
    return BenefitRead(code=b.code, name=b.name, description=b.description, config=_object(b.config_json))


def program_read(p: pb.Program) -> ProgramRead:
    return ProgramRead(
        id=p.id,
        name=p.name,
        currency=p.currency,
        tiers=[
            TierRead(
                code=t.code,
                name=t.name,
                rank=t.rank,
                threshold_points=t.threshold_points,
                threshold_spend_minor=t.threshold_spend_minor,
                threshold_orders=t.threshold_orders,
                points_multiplier=t.points_multiplier or 1.0,
                discount_percent=t.discount_percent,
                free_shipping=t.free_shipping,
                benefits=[_benefit_read(b) for b in t.benefits],
            )
            for t in p.tiers
        ],
        earn_rules=[
            EarnRuleRead(
                id=r.id,
                name=r.name,
                trigger=r.trigger,
                points=r.points,
                points_per_unit=r.points_per_unit,
                unit_minor=r.unit_minor,
                categories=list(r.categories),
                multiplier=r.multiplier or 1.0,
                category_multipliers=dict(r.category_multipliers),
                item_multipliers=dict(r.item_multipliers),
                cap_points=r.cap_points,
                cap_window_days=r.cap_window_days,
                valid_from=time_field(r, "valid_from"),
                valid_until=time_field(r, "valid_until"),
                enabled=r.enabled,
                boost=r.boost,
                not_qualifying=r.not_qualifying,
                conditions=_object(r.conditions_json),
            )
            for r in p.earn_rules
        ],
        points_validity_days=p.points_validity_days,
        pending_days=p.pending_days,
        expiry_reminder_days=p.expiry_reminder_days,
        tier_window_months=p.tier_window_months,
        expiry_mode=EXPIRY_MODE.name(p.expiry_mode),
        tier_basis=TIER_BASIS.name(p.tier_basis),
        downgrade_policy=DOWNGRADE_POLICY.name(p.downgrade_policy),
        auto_enroll=p.auto_enroll,
        enroll_on_order=p.enroll_on_order,
        point_value_minor=p.point_value_minor,
        time_zone=p.time_zone,
        enabled=p.enabled,
        created_at=time_field(p, "created_at"),
        updated_at=time_field(p, "updated_at"),
    )


def report_read(r: pb.GetProgramReportResponse) -> ProgramReport:
    return ProgramReport(
        program_id=r.program_id,
        members=r.members,
        outstanding_points=r.outstanding_points,
        pending_points=r.pending_points,
        debt_points=r.debt_points,
        liability_minor=r.liability_minor,
        currency=r.currency,
        tiers=[TierCountRead(tier_code=t.tier_code, tier_name=t.tier_name, members=t.members) for t in r.tiers],
        periods=[
            PeriodTotalsRead(
                start=time_field(x, "start"),
                earned=x.earned,
                spent=x.spent,
                expired=x.expired,
                reversed=x.reversed,
                adjusted=x.adjusted,
                members_enrolled=x.members_enrolled,
                members_lost=x.members_lost,
                tier_upgrades=x.tier_upgrades,
                tier_downgrades=x.tier_downgrades,
            )
            for x in r.periods
        ],
        as_of=time_field(r, "as_of"),
    )


def member_read(m: pb.Member) -> MemberRead:
    t, b = m.tier, m.balance
    return MemberRead(
        profile_id=m.profile_id,
        program_id=m.program_id,
        member_number=m.member_number,
        status=MEMBER_STATUS.name(m.status),
        balance=BalanceRead(
            available=b.available,
            pending=b.pending,
            qualifying=b.qualifying,
            qualifying_spend_minor=b.qualifying_spend_minor,
            qualifying_orders=b.qualifying_orders,
            debt=b.debt,
            lifetime_earned=b.lifetime_earned,
            lifetime_spent=b.lifetime_spent,
            lifetime_expired=b.lifetime_expired,
            lifetime_reversed=b.lifetime_reversed,
            next_expiring_points=b.next_expiring_points,
            next_expiry_at=time_field(b, "next_expiry_at"),
        ),
        tier=MemberTierRead(
            code=t.tier_code,
            name=t.tier_name,
            rank=t.rank,
            since=time_field(t, "since"),
            basis=t.basis or "points",
            review_at=time_field(t, "review_at"),
            points_multiplier=t.points_multiplier or 1.0,
            discount_percent=t.discount_percent,
            free_shipping=t.free_shipping,
        ),
        next_tier=NextTierRead(
            code=t.next_tier_code,
            name=t.next_tier_name,
            threshold=t.next_tier_threshold,
            to_go=t.points_to_next_tier,
        )
        if t.next_tier_code
        else None,
        benefits=[_benefit_read(x) for x in m.benefits],
        enrolled_at=time_field(m, "enrolled_at"),
        updated_at=time_field(m, "updated_at"),
    )


def entry_read(e: pb.LedgerEntry) -> LedgerEntryRead:
    return LedgerEntryRead(
        id=e.id,
        program_id=e.program_id,
        profile_id=e.profile_id,
        kind=LEDGER_KIND.name(e.kind),
        points=e.points,
        balance_after=e.balance_after,
        qualifying_points=e.qualifying_points,
        reason=e.reason,
        description=e.description,
        order_id=_or_none(e.order_id),
        rule_id=_or_none(e.rule_id),
        reverses_entry_id=_or_none(e.reverses_entry_id),
        actor=_or_none(e.actor),
        debt_points=e.debt_points,
        consumed=[LotConsumptionRead(lot_id=c.lot_id, points=c.points) for c in e.consumed],
        created_at=time_field(e, "created_at"),
        available_at=time_field(e, "available_at"),
        expires_at=time_field(e, "expires_at"),
    )


def campaign_read(c: pb.CouponCampaign) -> CampaignRead:
    return CampaignRead(
        id=c.id,
        name=c.name,
        description=c.description,
        discount_type=DISCOUNT_TYPE.name(c.discount_type),
        percent_off=c.percent_off,
        amount_off_minor=c.amount_off_minor,
        currency=_or_none(c.currency),
        min_order_minor=c.min_order_minor,
        categories=list(c.categories),
        gift_item_id=_or_none(c.gift_item_id),
        valid_from=time_field(c, "valid_from"),
        valid_until=time_field(c, "valid_until"),
        validity_days=c.validity_days,
        max_issued=c.max_issued,
        per_profile_limit=c.per_profile_limit,
        remind_days_before_expiry=c.remind_days_before_expiry,
        code_prefix=c.code_prefix,
        code_source=CODE_SOURCE.name(c.code_source),
        status=CAMPAIGN_STATUS.name(c.status),
        issued_count=c.issued_count,
        redeemed_count=c.redeemed_count,
        pool_available=c.pool_available,
        created_at=time_field(c, "created_at"),
        updated_at=time_field(c, "updated_at"),
    )


def coupon_read(c: pb.Coupon) -> CouponRead:
    return CouponRead(
        code=c.code,
        campaign_id=c.campaign_id,
        profile_id=c.profile_id,
        state=COUPON_STATE.name(c.state),
        source=c.source,
        issued_at=time_field(c, "issued_at"),
        expires_at=time_field(c, "expires_at"),
        reserved_order_id=_or_none(c.reserved_order_id),
        reserved_until=time_field(c, "reserved_until"),
        redeemed_order_id=_or_none(c.redeemed_order_id),
        redeemed_at=time_field(c, "redeemed_at"),
        revoked_at=time_field(c, "revoked_at"),
        revoke_reason=_or_none(c.revoke_reason),
        revoked_by=_or_none(c.revoked_by),
    )


def validation_read(r: pb.ValidateCouponResponse) -> ValidationResult:
    shown = r.HasField("coupon") and bool(r.coupon.code)  # only the owner sees the coupon and what it gives
    return ValidationResult(
        valid=r.valid,
        reason=r.reason or None,
        discount_minor=r.discount_minor,
        currency=r.currency or None,
        coupon=coupon_read(r.coupon) if shown else None,
        discount_type=DISCOUNT_TYPE.name(r.discount_type) if shown and r.discount_type else None,
        free_shipping=r.free_shipping,
        gift_item_id=_or_none(r.gift_item_id),
    )


def redemption_result(r: pb.RedeemCouponResponse) -> RedeemResult:
    return RedeemResult(
        **coupon_read(r.coupon).model_dump(), discount_minor=r.discount_minor, currency=_or_none(r.currency)
    )


def reward_read(r: pb.Reward) -> RewardRead:
    return RewardRead(
        id=r.id,
        program_id=r.program_id,
        name=r.name,
        description=r.description,
        image_url=_or_none(r.image_url),
        kind=REWARD_KIND.name(r.kind),
        points_cost=r.points_cost,
        stock=r.stock,
        unlimited_stock=r.unlimited_stock,
        min_tier_code=_or_none(r.min_tier_code),
        coupon_campaign_id=_or_none(r.coupon_campaign_id),
        enabled=r.enabled,
        created_at=time_field(r, "created_at"),
        updated_at=time_field(r, "updated_at"),
    )


def redemption_read(r: pb.RewardRedemption) -> RedemptionRead:
    return RedemptionRead(
        id=r.id,
        program_id=r.program_id,
        profile_id=r.profile_id,
        reward_id=r.reward_id,
        quantity=r.quantity,
        points=r.points,
        status=REDEMPTION_STATUS.name(r.status),
        ledger_entry_id=r.ledger_entry_id,
        coupon_code=_or_none(r.coupon_code),
        shipping_address=_object(r.shipping_address_json) or None,
        tracking_number=_or_none(r.tracking_number),
        created_at=time_field(r, "created_at"),
        updated_at=time_field(r, "updated_at"),
    )
