"""Coupon API shapes: campaigns (discount, validity, limits, code source), code pools, issued coupons,
the checkout calls (validate, reserve, redeem, release) and revoking. Money is integer minor units +
currency."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gateway.schemas.loyalty import (
    CURRENCY_DESCRIPTION,
    INT32_MAX,
    MAX_POINTS,
    Currency,
    Days,
    Description,
    ExternalId,
    Label,
    Minor,
    Name,
    OrderIn,
    Source,
    Text200,
    Uuid,
    text,
)

DiscountType = Literal["percent_off", "amount_off", "free_shipping", "gift"]
CampaignStatus = Literal["active", "paused", "ended"]
CodeSource = Literal["generated", "pool"]
CouponState = Literal["issued", "reserved", "redeemed", "expired", "revoked"]
# what a coupon code may look like in a path or a pool upload: printable, no spaces or slashes
# codes are case-insensitive (stored upper case): 1..64 of letters, digits, _ - ., starting with a letter or digit
CouponCode = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
RevokeReason = text(500, min_length=1)

CAMPAIGN_EXAMPLE: dict[str, Any] = {
    "name": "Welcome 10% off",
    "description": "for new members, 30 days",
    "discount_type": "percent_off",
    "percent_off": 10,
    "min_order_minor": 20000,
    "currency": "CNY",
    "valid_from": "2026-11-01T00:00:00Z",
    "valid_until": "2027-11-01T00:00:00Z",
    "validity_days": 30,
    "per_profile_limit": 1,
    "remind_days_before_expiry": 3,
    "code_prefix": "WELCOME10-",
}


class CampaignWrite(BaseModel):
    """The whole campaign; a PUT replaces every field (counters are kept)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CAMPAIGN_EXAMPLE]})

    name: Name
    description: Description = ""
    discount_type: DiscountType
    percent_off: int = Field(0, ge=0, le=100, description="1..100 for percent_off")
    amount_off_minor: Minor = Field(0, description="for amount_off, minor units of `currency`")
    currency: Currency | None = Field(None, description="for amounts; " + CURRENCY_DESCRIPTION)
    min_order_minor: Minor = Field(0, description="minimum eligible order amount (0: none)")
    categories: list[Label] = Field(default_factory=list, max_length=100, description="eligible categories; empty: all")
    gift_item_id: Text200 = Field("", description="for gift")
    valid_from: AwareDatetime | None = Field(None, description="coupons can be issued and used only inside the window")
    valid_until: AwareDatetime | None = None
    validity_days: Days = Field(0, description="each coupon expires this long after issue (0: at valid_until)")
    max_issued: int = Field(0, ge=0, le=MAX_POINTS, description="most coupons the campaign may issue (0: unlimited)")
    per_profile_limit: int = Field(0, ge=0, le=INT32_MAX, description="most coupons per profile (0: unlimited)")
    remind_days_before_expiry: Days = Field(0, description="coupon.expiring this long before a coupon expires")
    code_prefix: Annotated[str, StringConstraints(max_length=24, pattern=r"^([A-Za-z0-9][A-Za-z0-9_.\-]*)?$")] = Field(
        "", description="prefix of generated codes, e.g. WELCOME10-"
    )
    code_source: CodeSource = Field("generated", description="generated unique codes, or a pool you upload")
    status: CampaignStatus = "active"

    @model_validator(mode="after")
    def _consistent(self) -> CampaignWrite:
        if self.discount_type == "percent_off" and not self.percent_off:
            raise ValueError("percent_off needs percent_off between 1 and 100")
        if self.discount_type == "amount_off" and not self.amount_off_minor:
            raise ValueError("amount_off needs amount_off_minor")
        if self.percent_off and self.discount_type != "percent_off":
            raise ValueError("percent_off is only for percent_off campaigns")
        if self.amount_off_minor and self.discount_type != "amount_off":
            raise ValueError("amount_off_minor is only for amount_off campaigns")
        if self.code_prefix and self.code_source == "pool":
            raise ValueError("code_prefix is for generated codes, not pools")
        if (self.amount_off_minor or self.min_order_minor) and not self.currency:
            raise ValueError("amounts need a currency")
        if self.discount_type == "gift" and not self.gift_item_id:
            raise ValueError("gift needs gift_item_id")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class CampaignRead(BaseModel):
    id: str
    name: str
    description: str
    discount_type: DiscountType | Literal["unspecified"]
    percent_off: int
    amount_off_minor: int
    currency: str | None
    min_order_minor: int
    categories: list[str]
    gift_item_id: str | None
    valid_from: datetime | None
    valid_until: datetime | None
    validity_days: int
    max_issued: int
    per_profile_limit: int
    remind_days_before_expiry: int
    code_prefix: str
    code_source: CodeSource
    status: CampaignStatus | Literal["unspecified"]
    issued_count: int
    redeemed_count: int
    pool_available: int = Field(description="codes left in the pool (code_source pool)")
    created_at: datetime | None
    updated_at: datetime | None


class CampaignPage(BaseModel):
    campaigns: list[CampaignRead] = Field(description="newest first")
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null at the end")


class CodesUpload(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"codes": ["XMAS-7KQ2", "XMAS-P9D4"]}]})

    codes: list[CouponCode] = Field(min_length=1, max_length=10_000)


class CodesUploadResult(BaseModel):
    added: int
    skipped: int = Field(description="codes already present anywhere in the tenant")
    pool_available: int


class IssueRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"profile_id": "01936f6e-2c51-7c3a-9d5e-0b2a4c6d8e10", "source": "popup"}]},
    )

    profile_id: Uuid
    source: Source = Field("api", description='who issues it: "journey", "reward", "popup", "manual"...')


class CouponRead(BaseModel):
    code: str
    campaign_id: str
    profile_id: str
    state: CouponState | Literal["unspecified"]
    source: str
    issued_at: datetime | None
    expires_at: datetime | None
    reserved_order_id: str | None = Field(description="set while reserved")
    reserved_until: datetime | None
    redeemed_order_id: str | None = Field(description="set once redeemed")
    redeemed_at: datetime | None
    revoked_at: datetime | None = Field(None, description="set once revoked")
    revoke_reason: str | None = Field(None, description="why it was revoked")
    revoked_by: str | None = Field(None, description="who revoked it")


class CouponPage(BaseModel):
    coupons: list[CouponRead] = Field(description="newest first")
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null at the end")


class ValidateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "profile_id": "01936f6e-2c51-7c3a-9d5e-0b2a4c6d8e10",
                    "order": {"order_id": "o-1001", "total_minor": 129900, "currency": "CNY"},
                }
            ]
        },
    )

    profile_id: Uuid
    order: OrderIn


class ValidationResult(BaseModel):
    valid: bool
    reason: str | None = Field(
        description='why not, a stable code: "not_found", "not_owner", "not_started", "expired", "redeemed", '
        '"reserved", "revoked", "min_order_not_met", "no_eligible_lines", "currency_mismatch"'
    )
    discount_minor: int = Field(description="discount on this order, minor units of the order currency")
    currency: str | None
    coupon: CouponRead | None
    discount_type: DiscountType | None = Field(
        None, description="what the coupon gives, whether valid or not (null when `coupon` is)"
    )
    free_shipping: bool = Field(False, description="the coupon gives free shipping")
    gift_item_id: str | None = Field(None, description='the gift item of a "gift" coupon, e.g. a free tote bag')


class ReserveRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"profile_id": "01936f6e-2c51-7c3a-9d5e-0b2a4c6d8e10", "order_id": "o-1001", "hold_seconds": 900}
            ]
        },
    )

    profile_id: Uuid
    order_id: ExternalId
    hold_seconds: int = Field(0, ge=0, le=7 * 86400, description="how long to hold it (0: 15 minutes)")


class RedeemRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "profile_id": "01936f6e-2c51-7c3a-9d5e-0b2a4c6d8e10",
                    "order_id": "o-1001",
                    "discount_minor": 12990,
                    "currency": "CNY",
                }
            ]
        },
    )

    profile_id: Uuid
    order_id: ExternalId
    discount_minor: Minor = Field(
        0, description="discount actually granted (reported in coupon.redeemed); ignored with `order`"
    )
    currency: Currency | None = Field(
        None, description="required with discount_minor; ignored with `order`; " + CURRENCY_DESCRIPTION
    )
    order: OrderIn | None = Field(
        None,
        description="the order: the coupon must apply to it (409 with the validation reason, e.g. "
        "`min_order_not_met`, otherwise) and the service computes the discount; its order_id must be `order_id`",
    )

    @model_validator(mode="after")
    def _currency(self) -> RedeemRequest:
        if self.discount_minor and not self.currency and self.order is None:
            raise ValueError("discount_minor needs a currency")
        return self


class RedeemResult(CouponRead):
    """The redeemed coupon and the discount recorded for it."""

    discount_minor: int = Field(description="the discount recorded: computed by the service when an order was sent")
    currency: str | None


class ReleaseRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"order_id": "o-1001", "profile_id": "01936f6e-2c51-7c3a-9d5e-0b2a4c6d8e10"}]},
    )

    order_id: ExternalId
    profile_id: Uuid | None = Field(None, description="when given, only the coupon's owner may release it (403)")


class RevokeRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "fraud: code shared publicly", "actor": "ops@example.com"}]},
    )

    reason: RevokeReason = Field(description="why; kept on the coupon")
    actor: Label | None = Field(None, description="who: operator id or email (default: the API key)")
