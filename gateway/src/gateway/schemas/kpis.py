"""The marketer's KPI document (GET /v1/kpis) and its sections."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Section = Literal["audience", "loyalty", "journeys", "channels", "recommendations"]
Granularity = Literal["day", "week", "month"]
ChannelName = Literal["email", "sms", "push", "in_app", "webhook", "unspecified"]


class Unavailable(BaseModel):
    section: Section
    reason: str = Field(description="why the section is missing (its service is down, timed out, ...)")


# ---- audience (identity) --------------------------------------------------------------------------


class AudiencePeriod(BaseModel):
    start: datetime
    known_gained: int = Field(description="profiles that got their first strong identifier (email, user id...)")
    erased: int = Field(description="persons erased (GDPR/PIPL): the audience lost")
    active: int = Field(description="distinct profiles with an event")
    active_members: int = Field(description="of those, loyalty members")
    churned: int = Field(description="customers who became churned (and still are)")
    buyers: int
    orders: int


class AudienceKpis(BaseModel):
    known_gained: int
    erased: int
    active: int
    active_members: int
    churned: int
    profiles: int = Field(description="live profiles now")
    known_profiles: int = Field(description="live profiles with a strong identifier now")
    lifecycle: dict[str, int] = Field(description="profiles per lifecycle stage now")
    customers: int = Field(description="profiles with at least one order, now")
    repeat_customers: int = Field(description="profiles with two or more orders, now")
    repurchase_rate: float = Field(description="repeat_customers / customers")
    window_buyers: int
    window_repeat_buyers: int
    window_repurchase_rate: float = Field(description="buyers with 2+ orders in the window / buyers in it")
    churn_rate: float = Field(description="churned customers / customers, now")
    periods: list[AudiencePeriod]


# ---- loyalty --------------------------------------------------------------------------------------


class TierMembers(BaseModel):
    tier_code: str
    tier_name: str
    members: int


class LoyaltyPeriod(BaseModel):
    start: datetime | None
    members_enrolled: int
    members_lost: int = Field(description="memberships erased")
    tier_upgrades: int
    tier_downgrades: int
    points_earned: int
    points_spent: int


class ProgramKpis(BaseModel):
    program_id: str
    name: str
    members: int = Field(description="members now")
    members_gained: int = Field(description="enrolled in the window")
    members_lost: int = Field(description="memberships erased in the window (profile.erased)")
    tier_upgrades: int
    tier_downgrades: int
    tiers: list[TierMembers]
    outstanding_points: int
    liability_minor: int
    currency: str
    periods: list[LoyaltyPeriod]


# ---- journeys -------------------------------------------------------------------------------------


class JourneyKpis(BaseModel):
    journey_id: str
    name: str
    status: str
    entered: int = Field(description="treated enrollments that entered in the window")
    converted: int
    conversion_rate: float
    holdout_entered: int
    holdout_converted: int
    holdout_conversion_rate: float
    uplift: float = Field(description="conversion_rate - holdout_conversion_rate")
    attributed_orders: int = Field(description="orders credited to the journey's messages (last touch)")
    attributed_revenue: dict[str, int] = Field(description="minor units per currency")


# ---- channels (messaging) -------------------------------------------------------------------------


class RevenueRead(BaseModel):
    currency: str
    orders: int
    revenue_minor: int


class ChannelKpis(BaseModel):
    channel: ChannelName
    sent: int
    delivered: int
    opened: int
    clicked: int
    bounced: int
    unsubscribed: int
    open_rate: float
    click_rate: float
    attributed_orders: int
    revenue: list[RevenueRead]
    cost_minor: int = Field(description="sent x the channel's cost per message")
    cost_currency: str
    roi: float | None = Field(description="(revenue in cost_currency - cost) / cost; null when the cost is 0")


class SourceKpis(BaseModel):
    journey_id: str | None
    campaign_id: str | None
    channel: ChannelName
    currency: str
    orders: int
    revenue_minor: int


class AttributionRead(BaseModel):
    window_hours: int
    count_opens: bool
    default_currency: str


class AttributionWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_hours: int = Field(168, ge=1, le=2160, description="how long before an order a touch counts (1-2160)")
    count_opens: bool = Field(True, description="an open (without a click) can take the credit")
    default_currency: str = Field("USD", pattern=r"^[A-Za-z]{3}$", description="ISO 4217, for orders naming none")


class ChannelsKpis(BaseModel):
    channels: list[ChannelKpis]
    sources: list[SourceKpis] = Field(description="attributed revenue per journey or campaign")
    unsubscribed_all_channels: int
    attribution: AttributionRead


# ---- recommendations ------------------------------------------------------------------------------


class RecommenderKpis(BaseModel):
    scenario: str
    recommender: str
    impressions: int
    clicks: int
    conversions: int
    click_through_rate: float
    conversion_rate: float


class RecommendationKpis(BaseModel):
    personalised_ctr: float = Field(description="CTR of every recommender but popular/trending")
    baseline_ctr: float = Field(description="CTR of popular and trending (what a visitor gets without personalisation)")
    ctr_uplift: float | None = Field(description="personalised_ctr / baseline_ctr - 1; null without baseline clicks")
    rows: list[RecommenderKpis]


# ---- the document ---------------------------------------------------------------------------------


class MoneyAmount(BaseModel):
    currency: str
    amount_minor: int


class KpiSummary(BaseModel):
    """The headline numbers, from the sections (null when their section is unavailable)."""

    members_gained: int | None = Field(description="loyalty members enrolled in the window (all programs)")
    members_lost: int | None = Field(description="loyalty memberships erased in the window (all programs)")
    persons_erased: int | None = Field(description="persons erased in the window, members or not")
    known_profiles_gained: int | None
    active_profiles: int | None
    active_members: int | None
    tier_upgrades: int | None
    tier_downgrades: int | None
    repurchase_rate: float | None
    churn_rate: float | None
    churned: int | None
    attributed_revenue: list[MoneyAmount] | None
    messaging_cost: list[MoneyAmount] | None
    roi: float | None = Field(description="all channels: (revenue - cost) / cost, when cost and revenue share "
                                          "one currency")
    cost_per_acquired_member: MoneyAmount | None = Field(
        description="messaging cost / members gained, when the cost is in one currency")
    recommendation_ctr_uplift: float | None


class KpiReport(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"since": "2026-11-07T00:00:00Z",
                                                               "until": "2026-12-07T00:00:00Z",
                                                               "granularity": "day"}]})

    since: datetime
    until: datetime
    granularity: Granularity
    summary: KpiSummary
    audience: AudienceKpis | None
    loyalty: list[ProgramKpis] | None
    journeys: list[JourneyKpis] | None
    channels: ChannelsKpis | None
    recommendations: RecommendationKpis | None
    unavailable: list[Unavailable] = Field(description="sections left out, with the reason; the call still "
                                                       "answers 200")
