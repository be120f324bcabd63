"""Rewards catalogue API shapes: rewards bought with points, redemption orders and their fulfilment
lifecycle (pending -> shipped -> delivered, fulfilled at once for coupons, or cancelled with a refund)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.schemas.loyalty import (
    MAX_POINTS,
    Code,
    Description,
    JsonObject,
    MemberRead,
    Name,
    Points,
    Reason,
    Text200,
    Uuid,
)

RewardKind = Literal["gift", "coupon", "digital"]
MAX_ADDRESS_BYTES = 4096
RedemptionStatus = Literal["pending", "fulfilled", "shipped", "delivered", "cancelled"]


class RewardWrite(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Running socks",
                    "kind": "gift",
                    "points_cost": 800,
                    "stock": 200,
                    "min_tier_code": "silver",
                    "image_url": "https://cdn.example.com/socks.png",
                },
                {
                    "name": "50 yuan off",
                    "kind": "coupon",
                    "points_cost": 1500,
                    "unlimited_stock": True,
                    "coupon_campaign_id": "01936f6e-0000-7000-8000-0000000000c1",
                },
            ]
        },
    )

    name: Name
    description: Description = ""
    image_url: AnyHttpUrl | None = Field(None, max_length=2000)
    kind: RewardKind = Field(description="gift (shipped), coupon (issued at once) or digital (out of band)")
    points_cost: Points
    stock: int = Field(0, ge=0, le=MAX_POINTS, description="units left; ignored with unlimited_stock")
    unlimited_stock: bool = False
    min_tier_code: Code | None = Field(None, description="lowest tier allowed to redeem it; null: any")
    coupon_campaign_id: Uuid | None = Field(None, description="for kind coupon: the campaign to issue from")
    enabled: bool = True

    @model_validator(mode="after")
    def _campaign(self) -> RewardWrite:
        if self.kind == "coupon" and not self.coupon_campaign_id:
            raise ValueError("a coupon reward needs coupon_campaign_id")
        if self.kind != "coupon" and self.coupon_campaign_id:
            raise ValueError("coupon_campaign_id is only for coupon rewards")
        return self


class RewardRead(BaseModel):
    id: str
    program_id: str
    name: str
    description: str
    image_url: str | None
    kind: RewardKind | Literal["unspecified"]
    points_cost: int
    stock: int
    unlimited_stock: bool
    min_tier_code: str | None
    coupon_campaign_id: str | None
    enabled: bool
    created_at: datetime | None
    updated_at: datetime | None


class RewardPage(BaseModel):
    rewards: list[RewardRead] = Field(description="cheapest first")
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null at the end")


class RedemptionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "program_id": "01936f6e-0000-7000-8000-000000000001",
                    "reward_id": "01936f6e-0000-7000-8000-0000000000a1",
                    "quantity": 1,
                    "shipping_address": {
                        "name": "Rachel",
                        "line1": "1 Nanjing Rd",
                        "city": "Shanghai",
                        "country": "CN",
                        "postal_code": "200001",
                    },
                }
            ]
        },
    )

    program_id: Uuid
    reward_id: Uuid
    quantity: int = Field(1, ge=1, le=100)
    shipping_address: JsonObject | None = Field(None, description="required for gifts: a non-empty JSON object")

    @field_validator("shipping_address")
    @classmethod
    def _address(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and not value:
            raise ValueError("must not be empty")
        if value is not None and len(orjson.dumps(value)) > MAX_ADDRESS_BYTES:
            raise ValueError(f"must be at most {MAX_ADDRESS_BYTES} bytes as JSON")
        return value


class RedemptionUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"status": "shipped", "tracking_number": "SF1234567890"},
                {"status": "cancelled", "reason": "out_of_stock"},
            ]
        },
    )

    status: Literal["fulfilled", "shipped", "delivered", "cancelled"]
    tracking_number: Text200 = ""
    reason: Reason | None = Field(None, description="why; required to cancel (the points are credited back)")

    @model_validator(mode="after")
    def _reason(self) -> RedemptionUpdate:
        if self.status == "cancelled" and not self.reason:
            raise ValueError("cancelling needs a reason")
        return self


class RedemptionRead(BaseModel):
    id: str
    program_id: str
    profile_id: str
    reward_id: str
    quantity: int
    points: int = Field(description="points debited in total")
    status: RedemptionStatus | Literal["unspecified"]
    ledger_entry_id: str = Field(description="the spend entry in the member's ledger")
    coupon_code: str | None = Field(description="for coupon rewards")
    shipping_address: dict[str, Any] | None
    tracking_number: str | None
    created_at: datetime | None
    updated_at: datetime | None


class RedemptionResult(BaseModel):
    redemption: RedemptionRead
    member: MemberRead | None = Field(description="the member after the debit")


class RedemptionPage(BaseModel):
    redemptions: list[RedemptionRead] = Field(description="newest first")
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null at the end")
