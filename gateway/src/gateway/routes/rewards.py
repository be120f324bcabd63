"""Rewards API: a program's catalogue of rewards bought with points, redemptions by members and their
fulfilment (pending -> shipped -> delivered, or cancelled with the points credited back). Reads need
`loyalty:read`, changes `loyalty:write` (or `admin`). Every state change honours `Idempotency-Key`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from gateway.auth import LoyaltyReader, LoyaltyWriter
from gateway.errors import ProblemError
from gateway.loyalty import REDEMPTION_STATUS, json_text, member_read, redemption_read, reward_pb, reward_read
from gateway.resources import IdentityDep, LoyaltyDep
from gateway.routes.loyalty import (
    READ_ERRORS,
    WRITE_ERRORS,
    CursorQuery,
    Limit,
    ProfileId,
    ProgramId,
    ProgramQuery,
    member_id,
)
from gateway.routes.profile_admin import IdempotencyKey
from gateway.schemas.rewards import (
    RedemptionCreate,
    RedemptionPage,
    RedemptionRead,
    RedemptionResult,
    RedemptionUpdate,
    RewardPage,
    RewardRead,
    RewardWrite,
)
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.grpc_client import tenant_metadata

router = APIRouter(prefix="/v1/loyalty", tags=["rewards"])
RewardId = Annotated[uuid.UUID, Path(description="reward id (UUID)")]
RedemptionId = Annotated[uuid.UUID, Path(description="redemption id (UUID)")]


@router.post(
    "/programs/{program_id}/rewards",
    response_model=RewardRead,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE_ERRORS,
    summary="Add a reward to a program's catalogue",
    description="A gift (shipped), a coupon of a campaign (issued at once) or a digital good. With "
    "`Idempotency-Key`, a retry returns the reward the first call created.",
)
async def create_reward(
    program_id: ProgramId,
    body: RewardWrite,
    response: Response,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> RewardRead:
    result = await loyalty.UpsertReward(
        pb.UpsertRewardRequest(reward=reward_pb(str(program_id), "", body), idempotency_key=idempotency_key or ""),
        metadata=tenant_metadata(principal.tenant_id),
    )
    response.headers["Location"] = f"/v1/loyalty/programs/{program_id}/rewards/{result.reward.id}"
    return reward_read(result.reward)


@router.put(
    "/programs/{program_id}/rewards/{reward_id}",
    response_model=RewardRead,
    responses=WRITE_ERRORS,
    summary="Replace a reward (price, stock, eligibility)",
)
async def replace_reward(
    program_id: ProgramId,
    reward_id: RewardId,
    body: RewardWrite,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> RewardRead:
    result = await loyalty.UpsertReward(
        pb.UpsertRewardRequest(
            reward=reward_pb(str(program_id), str(reward_id), body), idempotency_key=idempotency_key or ""
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return reward_read(result.reward)


@router.get(
    "/programs/{program_id}/rewards",
    response_model=RewardPage,
    responses=READ_ERRORS,
    summary="A program's rewards, cheapest first; with profile_id and eligible_only, what that member can redeem",
)
async def list_rewards(
    program_id: ProgramId,
    principal: LoyaltyReader,
    loyalty: LoyaltyDep,
    profile_id: Annotated[uuid.UUID | None, Query(description="the member to check eligibility for")] = None,
    eligible_only: Annotated[
        bool, Query(description="only rewards the member's tier allows and balance affords (needs profile_id)")
    ] = False,
    limit: Limit = 50,
    cursor: CursorQuery = None,
) -> RewardPage:
    if eligible_only and profile_id is None:
        raise ProblemError("invalid_request", "eligible_only needs profile_id.", status=400)
    result = await loyalty.ListRewards(
        pb.ListRewardsRequest(
            program_id=str(program_id),
            profile_id=str(profile_id or ""),
            eligible_only=eligible_only,
            page_size=limit,
            page_token=cursor or "",
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return RewardPage(rewards=[reward_read(r) for r in result.rewards], next_cursor=result.next_page_token or None)


@router.post(
    "/members/{profile_id}/redemptions",
    response_model=RedemptionResult,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE_ERRORS,
    summary="Exchange points for a reward",
    description="Debits the points and creates a redemption order (a coupon reward is issued at once); emits "
    "`points.spent` and `reward.redeemed`. 409 when the points or the stock do not suffice. Send "
    "`Idempotency-Key`: a retry returns the same redemption and debits nothing again.",
)
async def redeem_reward(
    profile_id: ProfileId,
    identity: IdentityDep,
    body: RedemptionCreate,
    response: Response,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> RedemptionResult:
    result = await loyalty.RedeemReward(
        pb.RedeemRewardRequest(
            program_id=body.program_id,
            profile_id=await member_id(identity, profile_id, principal),
            reward_id=body.reward_id,
            quantity=body.quantity,
            shipping_address_json=json_text(body.shipping_address),
            idempotency_key=idempotency_key or "",
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    response.headers["Location"] = f"/v1/loyalty/redemptions/{result.redemption.id}"
    return RedemptionResult(
        redemption=redemption_read(result.redemption),
        member=member_read(result.member) if result.HasField("member") else None,
    )


@router.get(
    "/redemptions/{redemption_id}",
    response_model=RedemptionRead,
    responses=READ_ERRORS,
    summary="A redemption order and its fulfilment status",
)
async def get_redemption(redemption_id: RedemptionId, principal: LoyaltyReader, loyalty: LoyaltyDep) -> RedemptionRead:
    result = await loyalty.GetRewardRedemption(
        pb.GetRewardRedemptionRequest(redemption_id=str(redemption_id)), metadata=tenant_metadata(principal.tenant_id)
    )
    return redemption_read(result.redemption)


@router.patch(
    "/redemptions/{redemption_id}",
    response_model=RedemptionRead,
    responses=WRITE_ERRORS,
    summary="Move a redemption along its lifecycle",
    description="pending -> shipped (with a tracking number) -> delivered; or cancelled (with a reason), which "
    "credits the points back and restores the stock. 409 for a move the lifecycle does not allow.",
)
async def update_redemption(
    redemption_id: RedemptionId,
    body: RedemptionUpdate,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> RedemptionRead:
    result = await loyalty.UpdateRewardRedemption(
        pb.UpdateRewardRedemptionRequest(
            redemption_id=str(redemption_id),
            status=REDEMPTION_STATUS.value(body.status),
            tracking_number=body.tracking_number,
            reason=body.reason or "",
            idempotency_key=idempotency_key or "",
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return redemption_read(result.redemption)


@router.get(
    "/members/{profile_id}/redemptions",
    response_model=RedemptionPage,
    responses=READ_ERRORS,
    summary="A member's redemption orders, newest first, page by page",
)
async def member_redemptions(
    profile_id: ProfileId,
    identity: IdentityDep,
    principal: LoyaltyReader,
    loyalty: LoyaltyDep,
    program_id: ProgramQuery = None,
    limit: Limit = 50,
    cursor: CursorQuery = None,
) -> RedemptionPage:
    result = await loyalty.ListRewardRedemptions(
        pb.ListRewardRedemptionsRequest(
            program_id=str(program_id or ""),
            profile_id=await member_id(identity, profile_id, principal),
            page_size=limit,
            page_token=cursor or "",
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return RedemptionPage(
        redemptions=[redemption_read(r) for r in result.redemptions], next_cursor=result.next_page_token or None
    )
