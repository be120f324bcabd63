"""Loyalty API shapes: programs (tiers, earn rules, points policy), members, points operations and the
ledger, plus the field types the coupon and reward schemas share (text, money, orders, pages).

Points are whole integers; money is integer minor units (cents, fen) with an ISO 4217 `currency`;
timestamps are RFC 3339 with an offset; proto enums are lower-case strings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

# ---- shared field types ---------------------------------------------------------------------------

INT32_MAX = 2**31 - 1
MAX_POINTS = 10**12  # far beyond any real balance, far inside int64
MAX_MINOR = 10**15  # minor units, inside int64 and exact in a JSON double
MAX_JSON_BYTES = 16 * 1024


def _storable(value: str) -> str:
    # Postgres text refuses NUL, and protobuf refuses strings that are not valid UTF-8 (lone surrogates
    # from JSON "\ud800" escapes): refuse both here as 422 rather than fail later as 500.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def text(max_length: int, *, min_length: int = 0) -> Any:
    """A str type of bounded length that the services can store."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length), AfterValidator(_storable)]


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    try:
        encoded = orjson.dumps(value)
    except TypeError as exc:  # orjson.JSONEncodeError: e.g. text that is not valid Unicode
        raise ValueError(f"must be encodable as JSON: {exc}") from None
    if b"\\u0000" in encoded:
        raise ValueError("must not contain NUL characters")
    if len(encoded) > MAX_JSON_BYTES:
        raise ValueError(f"must be at most {MAX_JSON_BYTES} bytes as JSON")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
Name = text(200, min_length=1)
Description = text(2000)
Reason = text(64, min_length=1)
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
ExternalId = text(200, min_length=1)  # order ids, item ids, store ids: the caller's identifiers
Source = text(64, min_length=1)
Points = Annotated[int, Field(gt=0, le=MAX_POINTS)]
Minor = Annotated[int, Field(ge=0, le=MAX_MINOR)]
Days = Annotated[int, Field(ge=0, le=36500)]
Multiplier = Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]
Cursor = text(1024)
Text64 = text(64)
Text200 = text(200)
Label = text(200, min_length=1)  # a category, item id or other caller-chosen label
Uuid = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
]

CURRENCY_DESCRIPTION = "ISO 4217 code, upper case"


class OrderLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: ExternalId
    category: Text200 = ""
    quantity: int = Field(1, ge=1, le=1_000_000)
    amount_minor: Minor = Field(description="line total after discounts, minor units of the order currency")


class OrderIn(BaseModel):
    """An order as earn rules and coupon checks see it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "order_id": "o-1001",
                    "total_minor": 129900,
                    "currency": "CNY",
                    "lines": [{"item_id": "pegasus-40", "category": "shoes", "quantity": 1, "amount_minor": 129900}],
                    "channel": "web",
                    "ordered_at": "2026-11-11T10:00:00Z",
                }
            ]
        },
    )

    order_id: ExternalId
    total_minor: Minor = Field(description="order total after discounts, minor units")
    currency: Currency = Field(description=CURRENCY_DESCRIPTION)
    lines: list[OrderLineIn] = Field(default_factory=list, max_length=1000)
    channel: Text64 = Field("", description="web, app, mini_program, pos...")
    store_id: Text200 = ""
    ordered_at: AwareDatetime | None = None


class BenefitWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code = Field(examples=["free_shipping"])
    name: Name = Field(examples=["Free shipping"])
    description: Description = ""
    config: JsonObject = Field(default_factory=dict, description="benefit-specific settings")


class BenefitRead(BaseModel):
    code: str
    name: str
    description: str
    config: dict[str, Any]


# ---- programs -------------------------------------------------------------------------------------

ExpiryMode = Literal["after_days", "end_of_month", "end_of_year", "never"]
TierBasis = Literal["points", "spend", "orders"]
DowngradePolicy = Literal["period_end", "never", "immediate"]


class TierWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code = Field(description="stable code", examples=["silver"])
    name: Name = Field(examples=["Silver"])
    rank: int = Field(ge=0, le=1000, description="0 is the base tier every member starts in; higher is better")
    threshold_points: int = Field(0, ge=0, le=MAX_POINTS, description="qualifying points needed")
    threshold_spend_minor: Minor = Field(0, description="spend needed when the program's tier_basis is spend")
    threshold_orders: int = Field(0, ge=0, le=INT32_MAX, description="orders needed when tier_basis is orders")
    points_multiplier: Multiplier = Field(1.0, description="earn multiplier for members of this tier")
    discount_percent: int = Field(0, ge=0, le=100)
    free_shipping: bool = False
    benefits: list[BenefitWrite] = Field(default_factory=list, max_length=50)


class TierRead(BaseModel):
    code: str
    name: str
    rank: int
    threshold_points: int
    threshold_spend_minor: int
    threshold_orders: int
    points_multiplier: float
    discount_percent: int
    free_shipping: bool
    benefits: list[BenefitRead]


class EarnRuleWrite(BaseModel):
    """Points = points + floor(amount / unit_minor) x points_per_unit over matching lines, times
    multiplier and the tier multiplier, capped by cap_points per cap_window_days."""

    model_config = ConfigDict(extra="forbid")

    id: Text64 = Field("", description="keep a rule's id when replacing a program; empty for a new rule")
    name: Name
    trigger: Label = Field(
        description='"order", "signup", "birthday", "review", "referral_share" or a behaviour event name',
        examples=["order"],
    )
    points: int = Field(0, ge=0, le=MAX_POINTS, description="fixed points per occurrence")
    points_per_unit: int = Field(0, ge=0, le=MAX_POINTS, description="points per unit_minor spent")
    unit_minor: Minor = Field(0, description="e.g. 100: one unit per 100 minor units")
    categories: list[Label] = Field(
        default_factory=list, max_length=100, description="only these order-line categories count; empty: all"
    )
    multiplier: Multiplier = 1.0
    category_multipliers: dict[Label, Multiplier] = Field(default_factory=dict, max_length=200)
    item_multipliers: dict[Label, Multiplier] = Field(default_factory=dict, max_length=1000)
    cap_points: int = Field(0, ge=0, le=MAX_POINTS, description="at most this many points per window (0: no cap)")
    cap_window_days: Days = Field(0, description="cap window (0: lifetime)")
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    enabled: bool = True
    boost: bool = Field(
        False, description="a campaign boost: multiplies the other rules of the trigger while valid, earns nothing"
    )
    not_qualifying: bool = Field(False, description="its points do not count towards tiers")
    conditions: JsonObject = Field(default_factory=dict, description="further conditions (loyalty-svc README)")

    @model_validator(mode="after")
    def _window(self) -> EarnRuleWrite:
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        if self.points_per_unit and not self.unit_minor:
            raise ValueError("points_per_unit needs unit_minor")
        return self


class EarnRuleRead(BaseModel):
    id: str
    name: str
    trigger: str
    points: int
    points_per_unit: int
    unit_minor: int
    categories: list[str]
    multiplier: float
    category_multipliers: dict[str, float]
    item_multipliers: dict[str, float]
    cap_points: int
    cap_window_days: int
    valid_from: datetime | None
    valid_until: datetime | None
    enabled: bool
    boost: bool
    not_qualifying: bool
    conditions: dict[str, Any]


PROGRAM_EXAMPLE: dict[str, Any] = {
    "name": "Runners Club",
    "currency": "CNY",
    "tiers": [
        {"code": "normal", "name": "Normal", "rank": 0, "threshold_points": 0},
        {"code": "silver", "name": "Silver", "rank": 1, "threshold_points": 1000, "points_multiplier": 1.25},
        {
            "code": "gold",
            "name": "Gold",
            "rank": 2,
            "threshold_points": 6000,
            "discount_percent": 5,
            "free_shipping": True,
            "benefits": [{"code": "birthday_gift", "name": "Birthday gift"}],
        },
    ],
    "earn_rules": [
        {"name": "100 per order", "trigger": "order", "points": 100},
        {"name": "1 per yuan", "trigger": "order", "points_per_unit": 1, "unit_minor": 100},
    ],
    "points_validity_days": 365,
    "pending_days": 14,
    "expiry_reminder_days": 30,
    "tier_window_months": 12,
    "point_value_minor": 1,
    "time_zone": "Asia/Shanghai",
}


class ProgramWrite(BaseModel):
    """The whole program: a PUT replaces tiers and earn rules with the ones sent."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [PROGRAM_EXAMPLE]})

    name: Name
    currency: Currency = Field(description="currency of amounts in earn rules; " + CURRENCY_DESCRIPTION)
    tiers: list[TierWrite] = Field(default_factory=list, max_length=20)
    earn_rules: list[EarnRuleWrite] = Field(default_factory=list, max_length=200)
    points_validity_days: Days = Field(0, description="points expire this long after they become available (0: never)")
    pending_days: Days = Field(0, description="order points stay pending this long (the return window)")
    expiry_reminder_days: Days = Field(0, description="points.expiring is emitted this long before expiry")
    tier_window_months: int = Field(0, ge=0, le=1200, description="qualification window (0: lifetime)")
    expiry_mode: ExpiryMode = "after_days"
    tier_basis: TierBasis = "points"
    downgrade_policy: DowngradePolicy = "period_end"
    auto_enroll: bool = Field(False, description='profiles become members on a "Signed Up" event')
    enroll_on_order: bool = Field(False, description="and on their first order")
    point_value_minor: Minor = Field(0, description="money value of one point, for the liability report")
    time_zone: Text64 = Field("", description="IANA name for calendar rules; UTC when empty")
    enabled: bool = True


class ProgramRead(BaseModel):
    id: str
    name: str
    currency: str
    tiers: list[TierRead]
    earn_rules: list[EarnRuleRead]
    points_validity_days: int
    pending_days: int
    expiry_reminder_days: int
    tier_window_months: int
    expiry_mode: ExpiryMode
    tier_basis: TierBasis
    downgrade_policy: DowngradePolicy
    auto_enroll: bool
    enroll_on_order: bool
    point_value_minor: int
    time_zone: str
    enabled: bool
    created_at: datetime | None
    updated_at: datetime | None


class ProgramList(BaseModel):
    programs: list[ProgramRead] = Field(description="oldest first")


class TierCountRead(BaseModel):
    tier_code: str
    tier_name: str
    members: int = Field(description="active members in the tier")


class PeriodTotalsRead(BaseModel):
    start: datetime | None
    earned: int
    spent: int
    expired: int
    reversed: int
    adjusted: int
    members_enrolled: int
    members_lost: int = Field(0, description="memberships ended by erasure in the period")
    tier_upgrades: int
    tier_downgrades: int


class ProgramReport(BaseModel):
    program_id: str
    members: int
    outstanding_points: int = Field(description="points members hold (available + pending, net of debt)")
    pending_points: int
    debt_points: int
    liability_minor: int = Field(description="outstanding_points x point_value_minor (0 without a point value)")
    currency: str
    tiers: list[TierCountRead]
    periods: list[PeriodTotalsRead]
    as_of: datetime | None


# ---- members --------------------------------------------------------------------------------------


class EnrollRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"profile_id": "01936f6e-2c51-7c3a-9d5e-0b2a4c6d8e10", "source": "exit_intent_popup"}]
        },
    )

    profile_id: Uuid = Field(description="identity profile id (UUID)")
    source: Source = Field("api", description='where the enrolment happened: "web", "app", "pos", "import"...')


class MemberTierRead(BaseModel):
    code: str = Field(examples=["silver"])
    name: str = Field(examples=["Silver"])
    rank: int
    since: datetime | None
    basis: str = Field(description='"points", "spend" (minor units) or "orders": the unit of thresholds')
    review_at: datetime | None = Field(description="end of the qualification period: the tier is reviewed then")
    points_multiplier: float
    discount_percent: int
    free_shipping: bool


class NextTierRead(BaseModel):
    code: str = Field(examples=["gold"])
    name: str = Field(examples=["Gold"])
    threshold: int = Field(description="what the tier needs, in the tier basis", examples=[6000])
    to_go: int = Field(description="how much is still missing, in the tier basis", examples=[2000])


class BalanceRead(BaseModel):
    available: int = Field(description="spendable now (net of debt)")
    pending: int = Field(description="earned, still in the return window")
    qualifying: int = Field(description="counted for tiers over the tier window")
    qualifying_spend_minor: int
    qualifying_orders: int
    debt: int = Field(description="owed after a return took back more than the balance held")
    lifetime_earned: int
    lifetime_spent: int
    lifetime_expired: int
    lifetime_reversed: int
    next_expiring_points: int
    next_expiry_at: datetime | None


MemberStatus = Literal["active", "suspended", "unspecified"]


class MemberRead(BaseModel):
    profile_id: str
    program_id: str
    member_number: str = Field(description="human-facing number (cards, POS)")
    status: MemberStatus
    balance: BalanceRead
    tier: MemberTierRead
    next_tier: NextTierRead | None = Field(description="null in the top tier")
    benefits: list[BenefitRead] = Field(description="benefits of the current tier")
    enrolled_at: datetime | None
    updated_at: datetime | None


# ---- points ---------------------------------------------------------------------------------------

LedgerKind = Literal["earn", "spend", "reversal", "expiry", "adjustment", "merge", "unspecified"]


class LotConsumptionRead(BaseModel):
    lot_id: str = Field(description="the EARN entry whose lot was consumed")
    points: int


class LedgerEntryRead(BaseModel):
    id: str
    program_id: str
    profile_id: str
    kind: LedgerKind
    points: int = Field(description="signed: positive credits, negative debits")
    balance_after: int = Field(description="available balance after this entry")
    qualifying_points: int = Field(description="qualifying (tier) points added or removed")
    reason: str
    description: str
    order_id: str | None
    rule_id: str | None
    reverses_entry_id: str | None
    actor: str | None = Field(description="who made a manual adjustment")
    debt_points: int
    consumed: list[LotConsumptionRead] = Field(description="for debits: the lots consumed")
    created_at: datetime | None
    available_at: datetime | None = Field(description="credited points are pending until then")
    expires_at: datetime | None


class EarnRequest(BaseModel):
    """Either explicit `points` (with a `reason`) or an `order` the program's earn rules evaluate."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"program_id": "01936f6e-0000-7000-8000-000000000001", "points": 200, "reason": "review"},
                {
                    "program_id": "01936f6e-0000-7000-8000-000000000001",
                    "order": {"order_id": "o-1001", "total_minor": 129900, "currency": "CNY"},
                },
            ]
        },
    )

    program_id: Uuid
    points: Points | None = Field(None, description="explicit points, available at once unless available_at")
    order: OrderIn | None = Field(None, description="points from the program's order rules, pending for pending_days")
    reason: Reason | None = Field(None, description='for explicit points: "signup", "birthday", "review", "manual"...')
    description: Description = ""
    available_at: AwareDatetime | None = Field(None, description="when explicit points become spendable")
    qualifying: bool = Field(False, description="explicit points also count towards tiers")

    @model_validator(mode="after")
    def _one_basis(self) -> EarnRequest:
        if (self.points is None) == (self.order is None):
            raise ValueError("give either points or order")
        if self.points is not None and not self.reason:
            raise ValueError("explicit points need a reason")
        if self.order is not None and (self.available_at is not None or self.qualifying):
            raise ValueError("available_at and qualifying apply to explicit points only")
        return self


class SpendRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "program_id": "01936f6e-0000-7000-8000-000000000001",
                    "points": 500,
                    "reason": "order_payment",
                    "order_id": "o-1002",
                }
            ]
        },
    )

    program_id: Uuid
    points: Points
    reason: Reason = Field(description='"order_payment", "donation"...')
    description: Description = ""
    order_id: Text200 = ""


class AdjustRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "program_id": "01936f6e-0000-7000-8000-000000000001",
                    "points": -300,
                    "actor": "ops@example.com",
                    "reason": "duplicate_order",
                }
            ]
        },
    )

    program_id: Uuid
    points: int = Field(ge=-MAX_POINTS, le=MAX_POINTS, description="signed, non-zero: positive credits")
    actor: Label = Field(description="who does it: operator id or email")
    reason: Reason
    description: Description = ""
    qualifying: bool = Field(False, description="adjust qualifying (tier) points instead of spendable points")
    allow_negative: bool = Field(False, description="a debit may take the balance below zero (recorded as debt)")

    @model_validator(mode="after")
    def _non_zero(self) -> AdjustRequest:
        if self.points == 0:
            raise ValueError("points must not be 0")
        return self


class ReverseRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "program_id": "01936f6e-0000-7000-8000-000000000001",
                    "order_id": "o-1001",
                    "refund_minor": 49900,
                    "currency": "CNY",
                    "reason": "return",
                }
            ]
        },
    )

    program_id: Uuid
    order_id: ExternalId
    refund_minor: Minor = Field(0, description="refunded amount; 0 reverses the whole order")
    currency: Currency | None = Field(None, description="required with refund_minor; " + CURRENCY_DESCRIPTION)
    reason: Reason = "return"

    @model_validator(mode="after")
    def _currency(self) -> ReverseRequest:
        if self.refund_minor and not self.currency:
            raise ValueError("refund_minor needs a currency")
        return self


class PointsResult(BaseModel):
    """What a points operation wrote and the member after it."""

    entries: list[LedgerEntryRead]
    member: MemberRead


class LedgerPage(BaseModel):
    entries: list[LedgerEntryRead] = Field(description="newest first")
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null at the end")
