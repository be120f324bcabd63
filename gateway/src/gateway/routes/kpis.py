"""The marketer's KPIs in one call (GET /v1/kpis): audience (identity), loyalty programs, journeys
(conversion against their holdout), channels (funnel, attributed revenue, cost, ROI) and
recommendations (CTR uplift of personalised over popular), plus focused routes per section.

Every section is fetched concurrently under the gateway's gRPC deadline. A section whose service is
down or slow is left out (null) and listed in `unavailable` with the reason: the rest of the document
still answers 200. Bad parameters (since after until, an unknown granularity, a window too long for
its granularity) are problem+json 400s before any service is called."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

import grpc
from fastapi import APIRouter, Query

from gateway.auth import AnalyticsReader, MessagingReader, MessagingWriter
from gateway.errors import ProblemError
from gateway.journeys import JOURNEY_STATUS
from gateway.profiles import time_field
from gateway.resources import Resources, ResourcesDep
from gateway.schemas.common import problem_responses
from gateway.schemas.kpis import (
    AttributionRead,
    AttributionWrite,
    AudienceKpis,
    AudiencePeriod,
    ChannelKpis,
    ChannelsKpis,
    Granularity,
    JourneyKpis,
    KpiReport,
    KpiSummary,
    LoyaltyPeriod,
    MoneyAmount,
    ProgramKpis,
    RecommendationKpis,
    RecommenderKpis,
    RevenueRead,
    Section,
    SourceKpis,
    TierMembers,
    Unavailable,
)
from mcloud.identity.v1 import identity_pb2
from mcloud.journey.v1 import journey_pb2
from mcloud.loyalty.v1 import loyalty_pb2
from mcloud.messaging.v1 import messaging_pb2
from mcloud.recommend.v1 import recommend_pb2
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.logs import get_logger
from mcloud_common.timestamps import from_timestamp, set_timestamp

log = get_logger(__name__)
router = APIRouter(prefix="/v1/kpis", tags=["kpis"])
ERRORS = problem_responses(400, 401, 403, 404, 429)

DEFAULT_WINDOW = timedelta(days=30)
# the longest window per granularity (identity buckets at most 400 days, 110 weeks, 26 months)
MAX_WINDOW = {"day": timedelta(days=366), "week": timedelta(days=731), "month": timedelta(days=731)}
MAX_JOURNEYS = 200
JOURNEY_STATS_CONCURRENCY = 8
BASELINE_RECOMMENDERS = frozenset({"popular", "trending"})
_CHANNEL_NAME = {messaging_pb2.CHANNEL_EMAIL: "email", messaging_pb2.CHANNEL_SMS: "sms",
                 messaging_pb2.CHANNEL_PUSH: "push", messaging_pb2.CHANNEL_IN_APP: "in_app",
                 messaging_pb2.CHANNEL_WEBHOOK: "webhook"}
_REASON = {grpc.StatusCode.UNAVAILABLE: "service unavailable", grpc.StatusCode.DEADLINE_EXCEEDED: "timed out",
           grpc.StatusCode.UNIMPLEMENTED: "not supported by the running service",
           grpc.StatusCode.CANCELLED: "service unavailable"}

Since = Annotated[datetime | None, Query(description="start of the window (RFC 3339); default: until - 30 days")]
Until = Annotated[datetime | None, Query(description="end of the window, exclusive (RFC 3339); default: now")]
GranularityQuery = Annotated[Granularity, Query(description="bucket of the per-period series (UTC)")]
ProgramQuery = Annotated[uuid.UUID | None, Query(description="one loyalty program; default: every program")]

T = TypeVar("T")


class Window:
    def __init__(self, since: datetime, until: datetime, granularity: str) -> None:
        self.since, self.until, self.granularity = since, until, granularity

    def stamp(self, message: Any, since_field: str = "since", until_field: str = "until") -> Any:
        set_timestamp(getattr(message, since_field), self.since)
        set_timestamp(getattr(message, until_field), self.until)
        return message


def window_of(since: datetime | None, until: datetime | None, granularity: str, now: datetime) -> Window:
    """The window asked for, defaults filled in; problem+json 400 when it is reversed or too long."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ProblemError("invalid_window", f"{name} needs a time zone offset (e.g. Z)", status=400)
    until = until or now
    since = since or until - DEFAULT_WINDOW
    if since >= until:
        raise ProblemError("invalid_window", "since must be before until", status=400)
    if until - since > MAX_WINDOW[granularity]:
        raise ProblemError("window_too_long", f"a {granularity} series covers at most "
                           f"{MAX_WINDOW[granularity].days} days; use a coarser granularity or a shorter window",
                           status=400)
    return Window(since, until, granularity)


async def _section(section: Section, call: Awaitable[T], unavailable: list[Unavailable]) -> T | None:
    """The section, or None with the reason recorded when its service failed or did not answer."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise  # the caller's mistake (an unknown program...): a problem+json for the whole call
        reason = _REASON.get(exc.code(), f"service error ({exc.code().name.lower()})")
        log.warning("kpi section unavailable", section=section, grpc_status=exc.code().name)
        unavailable.append(Unavailable(section=section, reason=reason))
        return None


class Sections:
    """The calls behind each section, as one tenant, under the gateway's deadline."""

    def __init__(self, resources: Resources, tenant: str, window: Window) -> None:
        self.r = resources
        self.md = tenant_metadata(tenant)
        self.timeout = resources.settings.grpc_timeout_seconds
        self.w = window

    async def audience(self) -> AudienceKpis:
        request = self.w.stamp(identity_pb2.GetAudienceReportRequest(granularity=self.w.granularity))
        r = await self.r.identity.GetAudienceReport(request, metadata=self.md, timeout=self.timeout)
        return AudienceKpis(
            known_gained=r.known_gained, erased=r.erased, active=r.active, active_members=r.active_members,
            churned=r.churned, profiles=r.profiles, known_profiles=r.known_profiles,
            lifecycle={c.stage: c.profiles for c in r.lifecycle}, customers=r.customers,
            repeat_customers=r.repeat_customers, repurchase_rate=r.repurchase_rate, window_buyers=r.window_buyers,
            window_repeat_buyers=r.window_repeat_buyers, window_repurchase_rate=r.window_repurchase_rate,
            churn_rate=r.churn_rate,
            periods=[AudiencePeriod(start=from_timestamp(p.start), known_gained=p.known_gained, erased=p.erased,
                                    active=p.active, active_members=p.active_members, churned=p.churned,
                                    buyers=p.buyers, orders=p.orders) for p in r.periods])

    async def loyalty(self, program_id: uuid.UUID | None) -> list[ProgramKpis]:
        listed = await self.r.loyalty.ListPrograms(loyalty_pb2.ListProgramsRequest(), metadata=self.md,
                                                   timeout=self.timeout)
        programs = [p for p in listed.programs if program_id is None or p.id == str(program_id)]
        if program_id is not None and not programs:
            raise ProblemError("not_found", f"no loyalty program {program_id}", status=404)

        async def one(program: loyalty_pb2.Program) -> ProgramKpis:
            request = loyalty_pb2.GetProgramReportRequest(program_id=program.id, period=self.w.granularity)
            self.w.stamp(request, "from", "to")
            r = await self.r.loyalty.GetProgramReport(request, metadata=self.md, timeout=self.timeout)
            return ProgramKpis(
                program_id=program.id, name=program.name, members=r.members,
                members_gained=sum(p.members_enrolled for p in r.periods),
                members_lost=sum(p.members_lost for p in r.periods),
                tier_upgrades=sum(p.tier_upgrades for p in r.periods),
                tier_downgrades=sum(p.tier_downgrades for p in r.periods),
                tiers=[TierMembers(tier_code=t.tier_code, tier_name=t.tier_name, members=t.members) for t in r.tiers],
                outstanding_points=r.outstanding_points, liability_minor=r.liability_minor, currency=r.currency,
                periods=[LoyaltyPeriod(start=time_field(p, "start"), members_enrolled=p.members_enrolled,
                                       members_lost=p.members_lost,
                                       tier_upgrades=p.tier_upgrades, tier_downgrades=p.tier_downgrades,
                                       points_earned=p.earned, points_spent=p.spent) for p in r.periods])

        return list(await asyncio.gather(*(one(p) for p in programs)))

    async def journeys(self) -> list[JourneyKpis]:
        journeys: list[journey_pb2.Journey] = []
        token = ""
        statuses = [journey_pb2.JOURNEY_STATUS_ACTIVE, journey_pb2.JOURNEY_STATUS_PAUSED,
                    journey_pb2.JOURNEY_STATUS_ARCHIVED]
        while len(journeys) < MAX_JOURNEYS:
            page = await self.r.journey.ListJourneys(
                journey_pb2.ListJourneysRequest(statuses=statuses, page_size=100, page_token=token),
                metadata=self.md, timeout=self.timeout)
            journeys.extend(page.journeys)
            token = page.next_page_token
            if not token:
                break
        limit = asyncio.Semaphore(JOURNEY_STATS_CONCURRENCY)

        async def one(j: journey_pb2.Journey) -> JourneyKpis | None:
            request = self.w.stamp(journey_pb2.GetJourneyStatsRequest(journey_id=j.id), "entered_from", "entered_to")
            async with limit:
                try:
                    s = await self.r.journey.GetJourneyStats(request, metadata=self.md, timeout=self.timeout)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.NOT_FOUND:  # deleted meanwhile
                        return None
                    raise
            return JourneyKpis(
                journey_id=j.id, name=j.name, status=JOURNEY_STATUS.name(j.status), entered=s.entered,
                converted=s.converted, conversion_rate=s.conversion_rate, holdout_entered=s.holdout_entered,
                holdout_converted=s.holdout_converted, holdout_conversion_rate=s.holdout_conversion_rate,
                uplift=s.uplift, attributed_orders=0, attributed_revenue={})

        found = await asyncio.gather(*(one(j) for j in journeys[:MAX_JOURNEYS]))
        return [j for j in found if j is not None]

    async def channels(self) -> ChannelsKpis:
        request = self.w.stamp(messaging_pb2.GetChannelReportRequest())
        r = await self.r.messaging.GetChannelReport(request, metadata=self.md, timeout=self.timeout)
        a = r.attribution
        return ChannelsKpis(
            channels=[ChannelKpis(
                channel=_CHANNEL_NAME.get(c.channel, "unspecified"), sent=c.sent, delivered=c.delivered,
                opened=c.opened, clicked=c.clicked, bounced=c.bounced, unsubscribed=c.unsubscribed,
                open_rate=c.open_rate, click_rate=c.click_rate, attributed_orders=c.attributed_orders,
                revenue=[RevenueRead(currency=x.currency, orders=x.orders, revenue_minor=x.revenue_minor)
                         for x in c.revenue],
                cost_minor=c.cost_minor, cost_currency=c.cost_currency,
                roi=c.roi if c.HasField("roi") else None) for c in r.channels],
            sources=[SourceKpis(journey_id=s.journey_id or None, campaign_id=s.campaign_id or None,
                                channel=_CHANNEL_NAME.get(s.channel, "unspecified"), currency=s.currency,
                                orders=s.orders, revenue_minor=s.revenue_minor) for s in r.sources],
            unsubscribed_all_channels=r.unsubscribed_all_channels,
            attribution=AttributionRead(window_hours=a.window_hours, count_opens=a.count_opens,
                                        default_currency=a.default_currency))

    async def recommendations(self) -> RecommendationKpis:
        request = self.w.stamp(recommend_pb2.GetRecommendationStatsRequest())
        r = await self.r.recommend.GetRecommendationStats(request, metadata=self.md, timeout=self.timeout)
        rows = [RecommenderKpis(scenario=s.scenario, recommender=s.recommender, impressions=s.impressions,
                                clicks=s.clicks, conversions=s.conversions, click_through_rate=s.click_through_rate,
                                conversion_rate=s.conversion_rate) for s in r.stats]
        return recommendation_kpis(rows)


def recommendation_kpis(rows: list[RecommenderKpis]) -> RecommendationKpis:
    """CTR of personalised recommenders against popular/trending, over every scenario ("*" rows are
    the scenarios' totals and are not counted again)."""
    base_imp = base_clicks = pers_imp = pers_clicks = 0
    for row in rows:
        if row.recommender == "*":
            continue
        if row.recommender in BASELINE_RECOMMENDERS:
            base_imp, base_clicks = base_imp + row.impressions, base_clicks + row.clicks
        else:
            pers_imp, pers_clicks = pers_imp + row.impressions, pers_clicks + row.clicks
    personalised = pers_clicks / pers_imp if pers_imp else 0.0
    baseline = base_clicks / base_imp if base_imp else 0.0
    return RecommendationKpis(personalised_ctr=personalised, baseline_ctr=baseline,
                              ctr_uplift=personalised / baseline - 1 if baseline > 0 and pers_imp else None,
                              rows=rows)


def _money(totals: dict[str, int]) -> list[MoneyAmount]:
    return [MoneyAmount(currency=c, amount_minor=v) for c, v in sorted(totals.items()) if c]


def summary_of(audience: AudienceKpis | None, loyalty: list[ProgramKpis] | None, channels: ChannelsKpis | None,
               recommendations: RecommendationKpis | None) -> KpiSummary:
    revenue: dict[str, int] = {}
    cost: dict[str, int] = {}
    if channels is not None:
        for c in channels.channels:
            for x in c.revenue:
                revenue[x.currency] = revenue.get(x.currency, 0) + x.revenue_minor
            if c.cost_minor:
                cost[c.cost_currency] = cost.get(c.cost_currency, 0) + c.cost_minor
    gained = sum(p.members_gained for p in loyalty) if loyalty is not None else None
    roi = per_member = None
    if len(cost) == 1:
        [(currency, spent)] = cost.items()
        roi = (revenue.get(currency, 0) - spent) / spent
        if gained:
            per_member = MoneyAmount(currency=currency, amount_minor=round(spent / gained))
    return KpiSummary(
        members_gained=gained,
        members_lost=sum(p.members_lost for p in loyalty) if loyalty is not None else None,
        persons_erased=audience.erased if audience else None,
        known_profiles_gained=audience.known_gained if audience else None,
        active_profiles=audience.active if audience else None,
        active_members=audience.active_members if audience else None,
        tier_upgrades=sum(p.tier_upgrades for p in loyalty) if loyalty is not None else None,
        tier_downgrades=sum(p.tier_downgrades for p in loyalty) if loyalty is not None else None,
        repurchase_rate=audience.repurchase_rate if audience else None,
        churn_rate=audience.churn_rate if audience else None,
        churned=audience.churned if audience else None,
        attributed_revenue=_money(revenue) if channels is not None else None,
        messaging_cost=_money(cost) if channels is not None else None,
        roi=roi, cost_per_acquired_member=per_member,
        recommendation_ctr_uplift=recommendations.ctr_uplift if recommendations else None)


def _credit_journeys(journeys: list[JourneyKpis] | None, channels: ChannelsKpis | None) -> None:
    """Attributed orders and revenue of each journey's messages, from the channel report."""
    if journeys is None or channels is None:
        return
    by_id = {j.journey_id: j for j in journeys}
    for s in channels.sources:
        j = by_id.get(s.journey_id or "")
        if j is not None:
            j.attributed_orders += s.orders
            j.attributed_revenue[s.currency] = j.attributed_revenue.get(s.currency, 0) + s.revenue_minor


def _sections(resources: Resources, tenant: str, since: datetime | None, until: datetime | None,
              granularity: str) -> Sections:
    return Sections(resources, tenant, window_of(since, until, granularity, resources.clock.now()))


@router.get(
    "",
    response_model=KpiReport,
    responses=ERRORS,
    summary="Every KPI a marketer follows, in one document",
    description="Members gained (loyalty enrolments) and lost (memberships erased), persons erased, known and "
    "active profiles and "
    "members, tier upgrades and downgrades, repurchase rate, churn, lifecycle stages, each journey's conversion "
    "against its holdout with the revenue attributed to it, each channel's funnel, attributed revenue, cost and "
    "ROI, cost per acquired member, and the CTR uplift of personalised recommendations, over [since, until) with "
    "a per-day, week or month series. Sections are fetched concurrently; one whose service is down is null and "
    "listed in `unavailable` (still 200). Windows: at most 366 days by day, 731 by week or month.",
)
async def kpis(
    principal: AnalyticsReader,
    resources: ResourcesDep,
    since: Since = None,
    until: Until = None,
    granularity: GranularityQuery = "day",
    program_id: ProgramQuery = None,
) -> KpiReport:
    s = _sections(resources, principal.tenant_id, since, until, granularity)
    unavailable: list[Unavailable] = []
    audience, loyalty, journeys, channels, recommendations = await asyncio.gather(
        _section("audience", s.audience(), unavailable),
        _section("loyalty", s.loyalty(program_id), unavailable),
        _section("journeys", s.journeys(), unavailable),
        _section("channels", s.channels(), unavailable),
        _section("recommendations", s.recommendations(), unavailable),
    )
    _credit_journeys(journeys, channels)
    return KpiReport(since=s.w.since, until=s.w.until, granularity=granularity,
                     summary=summary_of(audience, loyalty, channels, recommendations), audience=audience,
                     loyalty=loyalty, journeys=journeys, channels=channels, recommendations=recommendations,
                     unavailable=sorted(unavailable, key=lambda u: u.section))


@router.get("/audience", response_model=AudienceKpis, responses=problem_responses(400, 401, 403, 429, 503, 504),
            summary="Audience: known profiles gained, erased, active, lifecycle, repurchase and churn")
async def audience_kpis(principal: AnalyticsReader, resources: ResourcesDep, since: Since = None,
                        until: Until = None, granularity: GranularityQuery = "day") -> AudienceKpis:
    return await _sections(resources, principal.tenant_id, since, until, granularity).audience()


@router.get("/journeys", response_model=list[JourneyKpis],
            responses=problem_responses(400, 401, 403, 429, 503, 504),
            summary="Each published journey's conversion against its holdout, for entries in the window")
async def journey_kpis(principal: AnalyticsReader, resources: ResourcesDep, since: Since = None,
                       until: Until = None) -> list[JourneyKpis]:
    return await _sections(resources, principal.tenant_id, since, until, "month").journeys()


@router.get("/channels", response_model=ChannelsKpis, responses=problem_responses(400, 401, 403, 429, 503, 504),
            summary="Each channel's funnel, attributed orders and revenue, cost and ROI")
async def channel_kpis(principal: AnalyticsReader, resources: ResourcesDep, since: Since = None,
                       until: Until = None) -> ChannelsKpis:
    return await _sections(resources, principal.tenant_id, since, until, "month").channels()


# ---- attribution settings (messaging) -------------------------------------------------------------

attribution_router = APIRouter(prefix="/v1/messaging", tags=["messages"])


def _attribution_read(a: messaging_pb2.AttributionSettings) -> AttributionRead:
    return AttributionRead(window_hours=a.window_hours, count_opens=a.count_opens, default_currency=a.default_currency)


@attribution_router.get("/attribution", response_model=AttributionRead,
                        responses=problem_responses(401, 403, 429, 503, 504),
                        summary="How orders are credited to messages (window, opens, default currency)")
async def get_attribution(principal: MessagingReader, resources: ResourcesDep) -> AttributionRead:
    r = await resources.messaging.GetAttributionSettings(messaging_pb2.GetAttributionSettingsRequest(),
                                                         metadata=tenant_metadata(principal.tenant_id))
    return _attribution_read(r.settings)


@attribution_router.put("/attribution", response_model=AttributionRead,
                        responses=problem_responses(400, 401, 403, 422, 429, 503, 504),
                        summary="Set how orders are credited to messages",
                        description="An `Order Completed` is credited to the message the person last clicked "
                        "(else, with `count_opens`, opened) at most `window_hours` before it; orders without a "
                        "`currency` are in `default_currency`. Applies to orders attributed from now on.")
async def put_attribution(body: AttributionWrite, principal: MessagingWriter,
                          resources: ResourcesDep) -> AttributionRead:
    r = await resources.messaging.SetAttributionSettings(
        messaging_pb2.SetAttributionSettingsRequest(settings=messaging_pb2.AttributionSettings(
            window_hours=body.window_hours, count_opens=body.count_opens, default_currency=body.default_currency)),
        metadata=tenant_metadata(principal.tenant_id))
    return _attribution_read(r.settings)
