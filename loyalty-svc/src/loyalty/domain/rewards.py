"""Rewards catalogue rules, pure: what a catalogue item may be, who may redeem it, the redemption
lifecycle per kind, shipping addresses."""

from __future__ import annotations

import orjson

from loyalty.domain import programs as prog
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.errors import FailedPrecondition, InvalidArgument
from mcloud_common.ids import parse_uuid

MAX_QUANTITY = 100
MAX_NAME = 200
MAX_ADDRESS_BYTES = 4096

KINDS = {pb.REWARD_KIND_GIFT: "gift", pb.REWARD_KIND_COUPON: "coupon", pb.REWARD_KIND_DIGITAL: "digital"}
KIND_ENUMS = {v: k for k, v in KINDS.items()}
STATUSES = {pb.REDEMPTION_STATUS_PENDING: "pending", pb.REDEMPTION_STATUS_FULFILLED: "fulfilled",
            pb.REDEMPTION_STATUS_SHIPPED: "shipped", pb.REDEMPTION_STATUS_DELIVERED: "delivered",
            pb.REDEMPTION_STATUS_CANCELLED: "cancelled"}
STATUS_ENUMS = {v: k for k, v in STATUSES.items()}

# The lifecycle, per kind. Coupons are fulfilled when redeemed (the coupon is the reward) and never change.
TRANSITIONS = {
    "gift": {"pending": {"shipped", "cancelled"}, "shipped": {"delivered", "cancelled"}},
    "digital": {"pending": {"fulfilled", "cancelled"}},
    "coupon": {},
}


def invalid(detail: str, code: str, field: str) -> InvalidArgument:
    """INVALID_ARGUMENT with a stable code, naming the field."""
    return InvalidArgument(detail, code=code, field=field)


def check_reward(program: pb.Program, reward: pb.Reward) -> None:
    """INVALID_ARGUMENT naming the field for anything a catalogue item cannot be."""
    if reward.id and parse_uuid(reward.id) is None:
        raise invalid("reward.id must be a UUID (or empty to create)", "invalid_reward_id", "reward.id")
    if not reward.name.strip():
        raise invalid("reward.name is required", "name_required", "reward.name")
    if len(reward.name) > MAX_NAME:
        raise invalid(f"reward.name: at most {MAX_NAME} characters", "name_too_long", "reward.name")
    if reward.kind not in KINDS:
        raise invalid("reward.kind must be GIFT, COUPON or DIGITAL", "kind_required", "reward.kind")
    if reward.points_cost <= 0:
        raise invalid("reward.points_cost must be > 0", "invalid_points_cost", "reward.points_cost")
    if reward.stock < 0:
        raise invalid("reward.stock must be >= 0", "invalid_stock", "reward.stock")
    if reward.kind == pb.REWARD_KIND_COUPON:
        if not reward.coupon_campaign_id:
            raise invalid("reward.coupon_campaign_id is required for a coupon reward", "coupon_campaign_required",
                       "reward.coupon_campaign_id")
        if parse_uuid(reward.coupon_campaign_id) is None:
            raise invalid("reward.coupon_campaign_id must be a UUID", "invalid_coupon_campaign_id",
                       "reward.coupon_campaign_id")
    elif reward.coupon_campaign_id:
        raise invalid("reward.coupon_campaign_id is only for coupon rewards", "coupon_campaign_not_allowed",
                   "reward.coupon_campaign_id")
    if reward.min_tier_code and reward.min_tier_code not in {t.code for t in program.tiers}:
        raise invalid(f"reward.min_tier_code {reward.min_tier_code!r} is not a tier of the program", "unknown_tier",
                   "reward.min_tier_code")


def tier_allows(program: pb.Program, member_tier_code: str, min_tier_code: str) -> bool:
    """A member of `member_tier_code` may redeem a reward for `min_tier_code` and above."""
    if not min_tier_code:
        return True
    return prog.tier_by_code(program, member_tier_code).rank >= prog.tier_by_code(program, min_tier_code).rank


def check_transition(kind: str, current: str, target: str) -> None:
    """FAILED_PRECONDITION not_cancellable (coupon rewards) or invalid_transition."""
    if target == "cancelled" and kind == "coupon":
        raise FailedPrecondition("a coupon reward cannot be cancelled: the coupon was issued", code="not_cancellable")
    if target not in TRANSITIONS[kind].get(current, set()):
        raise FailedPrecondition(f"a {kind} redemption cannot go from {current} to {target}",
                                 code="invalid_transition", current=current, target=target)


def check_update(request: pb.UpdateRewardRedemptionRequest) -> None:
    if request.status not in STATUSES:
        raise invalid("status must be a redemption status", "status_required", "status")
    if request.status == pb.REDEMPTION_STATUS_CANCELLED and not request.reason.strip():
        raise invalid("reason is required to cancel a redemption", "reason_required", "reason")


def parse_address(text: str) -> dict:
    """The shipping address: a non-empty JSON object, else INVALID_ARGUMENT."""
    if len(text.encode()) > MAX_ADDRESS_BYTES:
        raise invalid(f"shipping_address_json: at most {MAX_ADDRESS_BYTES} bytes", "invalid_shipping_address",
                   "shipping_address_json")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise invalid("shipping_address_json is not valid JSON", "invalid_shipping_address",
                   "shipping_address_json") from None
    if not isinstance(value, dict) or not value:
        raise invalid("shipping_address_json must be a non-empty JSON object", "invalid_shipping_address",
                   "shipping_address_json")
    return value
