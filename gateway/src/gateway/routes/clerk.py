"""The store-clerk tablet's 360 view: profile, recent views and cart (identity), points and tier
(loyalty), what to suggest (recommend), in one call.

The profile is looked up first (its errors are the route's: 404 for an unknown customer); the other
three calls then run concurrently, each under a short deadline. A part whose service is down, slow or
not built yet is left empty and named in `unavailable`: a clerk is better served by a partial view now
than by an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import grpc
from fastapi import APIRouter

from gateway.auth import ProfilesReader
from gateway.profiles import event_read, lookup_request, profile_read, time_field
from gateway.resources import ResourcesDep
from gateway.routes.profiles import IdentifierPath
from gateway.schemas.clerk import (
    BenefitRead,
    ClerkView,
    LoyaltyRead,
    NextTierRead,
    Part,
    PointsRead,
    RecommendationRead,
    TierRead,
)
from gateway.schemas.common import problem_responses
from mcloud.identity.v1 import identity_pb2
from mcloud.loyalty.v1 import loyalty_pb2, loyalty_pb2_grpc
from mcloud.recommend.v1 import recommend_pb2, recommend_pb2_grpc
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.logs import get_logger

log = get_logger(__name__)
router = APIRouter(prefix="/v1/clerk", tags=["clerk"])

RECENT_VIEWS = 20
EVENTS_SCANNED = 100  # the latest events searched for views (orders, emails... are skipped)
PRODUCT_VIEWED = "Product Viewed"  # Segment e-commerce spec
RECOMMENDATIONS = 10
_MEMBER_STATUS = {loyalty_pb2.MEMBER_STATUS_ACTIVE: "active", loyalty_pb2.MEMBER_STATUS_SUSPENDED: "suspended"}

T = TypeVar("T")


async def _best_effort(
    part: Part, call: Awaitable[T], unavailable: list[Part], *, absent: tuple[grpc.StatusCode, ...] = ()
) -> T | None:
    """The call's answer; None when it failed (the part is then recorded as unavailable) or answered
    one of the `absent` statuses (nothing to show, e.g. not a loyalty member)."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        if exc.code() not in absent:
            log.warning("clerk view part unavailable", part=part, grpc_status=exc.code().name)
            unavailable.append(part)
        return None


def _is_view(e: identity_pb2.ProfileEvent) -> bool:
    return e.type in (identity_pb2.CALL_TYPE_PAGE, identity_pb2.CALL_TYPE_SCREEN) or (
        e.type == identity_pb2.CALL_TYPE_TRACK and e.name == PRODUCT_VIEWED
    )


def _cart(computed: dict) -> list[str]:
    cart = computed.get("cart")
    return [str(item) for item in cart] if isinstance(cart, list) else []


def loyalty_read(m: loyalty_pb2.Member) -> LoyaltyRead:
    t, b = m.tier, m.balance
    return LoyaltyRead(
        program_id=m.program_id,
        member_number=m.member_number,
        status=_MEMBER_STATUS.get(m.status, "unspecified"),
        tier=TierRead(code=t.tier_code, name=t.tier_name, rank=t.rank, since=time_field(t, "since")),
        next_tier=NextTierRead(
            code=t.next_tier_code,
            name=t.next_tier_name,
            threshold=t.next_tier_threshold,
            points_to_go=t.points_to_next_tier,
        )
        if t.next_tier_code
        else None,
        points=PointsRead(
            available=b.available,
            pending=b.pending,
            qualifying=b.qualifying,
            next_expiring=b.next_expiring_points,
            next_expiry_at=time_field(b, "next_expiry_at"),
        ),
        benefits=[BenefitRead(code=x.code, name=x.name, description=x.description) for x in m.benefits],
    )


def recommendation_read(r: recommend_pb2.RecommendedItem) -> RecommendationRead:
    item = r.item if r.HasField("item") else None
    return RecommendationRead(
        item_id=r.item_id,
        score=r.score,
        recommender=r.recommender,
        explanation=r.explanation,
        title=item.title or None if item else None,
        image_url=item.image_url or None if item else None,
        price_minor=item.price_minor if item and item.currency else None,
        currency=item.currency or None if item else None,
    )


@router.get(
    "/{identifier}",
    response_model=ClerkView,
    responses=problem_responses(400, 401, 403, 404, 429, 503, 504),
    summary="A customer at a glance, for the store clerk's tablet",
    description="Profile, recent views, cart, loyalty tier and points with the distance to the next tier, "
    "and recommendations for the store tablet. Only the profile lookup can fail the call (404 for an "
    "unknown customer); any other part whose service does not answer in time is left empty and listed in "
    "`unavailable`, with HTTP 200.",
)
async def clerk_view(identifier: IdentifierPath, principal: ProfilesReader, resources: ResourcesDep) -> ClerkView:
    metadata = tenant_metadata(principal.tenant_id)
    timeout = resources.settings.clerk_timeout_seconds
    identity = resources.identity
    found = await identity.GetProfile(lookup_request(identifier), metadata=metadata, timeout=timeout)
    profile = profile_read(found.profile)
    loyalty = loyalty_pb2_grpc.LoyaltyServiceStub(resources.channels["loyalty"])
    recommend = recommend_pb2_grpc.RecommendServiceStub(resources.channels["recommend"])
    unavailable: list[Part] = []
    events, member, recommended = await asyncio.gather(
        _best_effort(
            "events",
            identity.ListProfileEvents(
                identity_pb2.ListProfileEventsRequest(profile_id=profile.id, page_size=EVENTS_SCANNED),
                metadata=metadata,
                timeout=timeout,
            ),
            unavailable,
        ),
        _best_effort(
            "loyalty",
            loyalty.GetMember(loyalty_pb2.GetMemberRequest(profile_id=profile.id), metadata=metadata, timeout=timeout),
            unavailable,
            absent=(grpc.StatusCode.NOT_FOUND,),
        ),
        _best_effort(
            "recommend",
            recommend.Recommend(
                recommend_pb2.RecommendRequest(
                    scenario=recommend_pb2.SCENARIO_STORE_TABLET,
                    profile_id=profile.id,
                    count=RECOMMENDATIONS,
                    include_items=True,
                ),
                metadata=metadata,
                timeout=timeout,
            ),
            unavailable,
        ),
    )
    views = [event_read(e) for e in events.events if _is_view(e)][:RECENT_VIEWS] if events is not None else []
    return ClerkView(
        profile=profile,
        recent_views=views,
        cart=_cart(profile.computed),
        loyalty=loyalty_read(member.member) if member is not None else None,
        recommendations=[recommendation_read(r) for r in recommended.items] if recommended is not None else [],
        recommendation_id=recommended.recommendation_id or None if recommended is not None else None,
        unavailable=sorted(unavailable),
    )
