"""The store-clerk tablet's 360 view of one customer, composed by the gateway from identity, loyalty
and recommend."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from gateway.schemas.profiles import ProfileEventRead, ProfileRead

Part = Literal["events", "loyalty", "recommend"]


class TierRead(BaseModel):
    code: str = Field(examples=["silver"])
    name: str = Field(examples=["Silver"])
    rank: int
    since: datetime | None


class NextTierRead(BaseModel):
    code: str = Field(examples=["gold"])
    name: str = Field(examples=["Gold"])
    threshold: int = Field(description="qualifying points the tier needs", examples=[6000])
    points_to_go: int = Field(description="qualifying points still missing", examples=[2000])


class PointsRead(BaseModel):
    available: int = Field(description="spendable now")
    pending: int = Field(description="earned, still in the return window")
    qualifying: int = Field(description="counted for tier qualification")
    next_expiring: int
    next_expiry_at: datetime | None


class BenefitRead(BaseModel):
    code: str
    name: str
    description: str


class LoyaltyRead(BaseModel):
    program_id: str
    member_number: str
    status: str = Field(description="active or suspended")
    tier: TierRead
    next_tier: NextTierRead | None = Field(description="null in the top tier")
    points: PointsRead
    benefits: list[BenefitRead]


class RecommendationRead(BaseModel):
    item_id: str
    score: float
    recommender: str = Field(description="item_to_item, personalized, popular, cross_category, ...")
    explanation: str = Field(examples=["Because you viewed Pegasus 40"])
    title: str | None = None
    image_url: str | None = None
    price_minor: int | None = None
    currency: str | None = None


class ClerkView(BaseModel):
    """Each part other than the profile is best effort: a service that is down, slow or not built yet
    leaves its part empty and is named in `unavailable`."""

    profile: ProfileRead
    recent_views: list[ProfileEventRead] = Field(
        description="latest page/screen views and 'Product Viewed' events, newest first (at most 20)"
    )
    cart: list[str] = Field(description="product ids in the cart now (computed.cart)")
    loyalty: LoyaltyRead | None = Field(description="null when not a member or loyalty is unavailable")
    recommendations: list[RecommendationRead] = Field(description="for the store tablet, best first")
    recommendation_id: str | None = Field(description="attributes clicks on the recommendations")
    unavailable: list[Part] = Field(description="parts left empty because their service did not answer")
