"""Coupon API: campaigns and their code pools, issuing coupons to profiles, checkout (validate,
reserve, redeem, release), revoking, plus a member's coupon wallet. Reads need `loyalty:read`, changes
`loyalty:write` (or `admin`). Every POST that changes state honours `Idempotency-Key`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from gateway.auth import LoyaltyReader, LoyaltyWriter
from gateway.loyalty import (
    COUPON_STATE,
    campaign_pb,
    campaign_read,
    coupon_read,
    order_pb,
    redemption_result,
    validation_read,
)
from gateway.resources import IdentityDep, LoyaltyDep
from gateway.routes.loyalty import READ_ERRORS, WRITE_ERRORS, CursorQuery, Limit, ProfileId, member_id
from gateway.routes.profile_admin import IdempotencyKey
from gateway.schemas.coupons import (
    CampaignPage,
    CampaignRead,
    CampaignWrite,
    CodesUpload,
    CodesUploadResult,
    CouponCode,
    CouponPage,
    CouponRead,
    CouponState,
    IssueRequest,
    RedeemRequest,
    RedeemResult,
    ReleaseRequest,
    ReserveRequest,
    RevokeRequest,
    ValidateRequest,
    ValidationResult,
)
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.grpc_client import tenant_metadata

router = APIRouter(tags=["coupons"])
CampaignId = Annotated[uuid.UUID, Path(description="campaign id (UUID)")]
CodePath = Annotated[CouponCode, Path(description="the coupon code")]


@router.post(
    "/v1/coupon-campaigns",
    response_model=CampaignRead,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE_ERRORS,
    summary="Create a coupon campaign",
    description="Discount (percent or amount off, free shipping, gift), eligibility (minimum order, categories), "
    "validity window and per-coupon validity, total and per-profile limits, generated codes or an uploaded "
    "pool. With `Idempotency-Key`, a retry returns the campaign the first call created.",
)
async def create_campaign(
    body: CampaignWrite,
    response: Response,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> CampaignRead:
    result = await loyalty.UpsertCouponCampaign(
        pb.UpsertCouponCampaignRequest(campaign=campaign_pb("", body), idempotency_key=idempotency_key or ""),
        metadata=tenant_metadata(principal.tenant_id),
    )
    response.headers["Location"] = f"/v1/coupon-campaigns/{result.campaign.id}"
    return campaign_read(result.campaign)


@router.put(
    "/v1/coupon-campaigns/{campaign_id}",
    response_model=CampaignRead,
    responses=WRITE_ERRORS,
    summary="Replace a coupon campaign (its counters are kept)",
)
async def replace_campaign(
    campaign_id: CampaignId,
    body: CampaignWrite,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> CampaignRead:
    result = await loyalty.UpsertCouponCampaign(
        pb.UpsertCouponCampaignRequest(
            campaign=campaign_pb(str(campaign_id), body), idempotency_key=idempotency_key or ""
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return campaign_read(result.campaign)


@router.get(
    "/v1/coupon-campaigns",
    response_model=CampaignPage,
    responses=READ_ERRORS,
    summary="List coupon campaigns, newest first, page by page",
)
async def list_campaigns(
    principal: LoyaltyReader, loyalty: LoyaltyDep, limit: Limit = 50, cursor: CursorQuery = None
) -> CampaignPage:
    result = await loyalty.ListCouponCampaigns(
        pb.ListCouponCampaignsRequest(page_size=limit, page_token=cursor or ""),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return CampaignPage(
        campaigns=[campaign_read(c) for c in result.campaigns], next_cursor=result.next_page_token or None
    )


@router.get(
    "/v1/coupon-campaigns/{campaign_id}",
    response_model=CampaignRead,
    responses=READ_ERRORS,
    summary="Read a coupon campaign with its counters",
)
async def get_campaign(campaign_id: CampaignId, principal: LoyaltyReader, loyalty: LoyaltyDep) -> CampaignRead:
    result = await loyalty.GetCouponCampaign(
        pb.GetCouponCampaignRequest(campaign_id=str(campaign_id)), metadata=tenant_metadata(principal.tenant_id)
    )
    return campaign_read(result.campaign)


@router.post(
    "/v1/coupon-campaigns/{campaign_id}/codes",
    response_model=CodesUploadResult,
    responses=WRITE_ERRORS,
    summary="Upload codes into a pool campaign (codes already there are skipped)",
)
async def upload_codes(
    campaign_id: CampaignId,
    body: CodesUpload,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> CodesUploadResult:
    result = await loyalty.AddCouponCodes(
        pb.AddCouponCodesRequest(campaign_id=str(campaign_id), codes=body.codes, idempotency_key=idempotency_key or ""),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return CodesUploadResult(added=result.added, skipped=result.skipped, pool_available=result.pool_available)


@router.post(
    "/v1/coupon-campaigns/{campaign_id}/issue",
    response_model=CouponRead,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE_ERRORS,
    summary="Issue a coupon of the campaign to a profile",
    description="Emits `coupon.issued`. 429 `resource_exhausted` (with a specific code) when the campaign or the "
    "per-profile limit is reached. Send `Idempotency-Key`: a retry returns the same coupon.",
)
async def issue_coupon(
    campaign_id: CampaignId,
    body: IssueRequest,
    response: Response,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> CouponRead:
    result = await loyalty.IssueCoupon(
        pb.IssueCouponRequest(
            campaign_id=str(campaign_id),
            profile_id=body.profile_id,
            source=body.source,
            idempotency_key=idempotency_key or "",
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    response.headers["Location"] = f"/v1/coupons/{result.coupon.code}"
    return coupon_read(result.coupon)


@router.get("/v1/coupons/{code}", response_model=CouponRead, responses=READ_ERRORS, summary="Read a coupon by code")
async def get_coupon(code: CodePath, principal: LoyaltyReader, loyalty: LoyaltyDep) -> CouponRead:
    result = await loyalty.GetCoupon(pb.GetCouponRequest(code=code), metadata=tenant_metadata(principal.tenant_id))
    return coupon_read(result.coupon)


@router.post(
    "/v1/coupons/{code}/validate",
    response_model=ValidationResult,
    responses=WRITE_ERRORS,
    summary="Whether the coupon applies to an order, and the discount (changes nothing)",
    description="Always 200 for a well-formed request: an unusable coupon is `valid: false` with a stable `reason`. "
    "To its owner it also says what the coupon gives (`discount_type`, `free_shipping`, `gift_item_id`).",
)
async def validate_coupon(
    code: CodePath, body: ValidateRequest, principal: LoyaltyReader, loyalty: LoyaltyDep
) -> ValidationResult:
    result = await loyalty.ValidateCoupon(
        pb.ValidateCouponRequest(code=code, profile_id=body.profile_id, order=order_pb(body.order)),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return validation_read(result)


@router.post(
    "/v1/coupons/{code}/reserve",
    response_model=CouponRead,
    responses=WRITE_ERRORS,
    summary="Hold the coupon for one order during checkout",
    description="Until `reserved_until` (default 15 minutes). Reserving again for the same order changes "
    "nothing; 409 when the coupon cannot be used.",
)
async def reserve_coupon(
    code: CodePath,
    body: ReserveRequest,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> CouponRead:
    result = await loyalty.ReserveCoupon(
        pb.ReserveCouponRequest(
            code=code,
            profile_id=body.profile_id,
            order_id=body.order_id,
            hold_seconds=body.hold_seconds,
            idempotency_key=idempotency_key or "",
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return coupon_read(result.coupon)


@router.post(
    "/v1/coupons/{code}/redeem",
    response_model=RedeemResult,
    responses=WRITE_ERRORS,
    summary="Consume the coupon for an order (issued, or reserved for the same order)",
    description="Emits `coupon.redeemed`. With `order`, the coupon must apply to it (409 with the validation "
    "reason otherwise) and the service computes the discount; without, `discount_minor` is recorded as sent. "
    "Send `Idempotency-Key`: a retry returns the redeemed coupon.",
)
async def redeem_coupon(
    code: CodePath,
    body: RedeemRequest,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> RedeemResult:
    request = pb.RedeemCouponRequest(
        code=code,
        profile_id=body.profile_id,
        order_id=body.order_id,
        discount_minor=body.discount_minor,
        currency=body.currency or "",
        idempotency_key=idempotency_key or "",
    )
    if body.order is not None:
        request.order.CopyFrom(order_pb(body.order))
    result = await loyalty.RedeemCoupon(request, metadata=tenant_metadata(principal.tenant_id))
    return redemption_result(result)


@router.post(
    "/v1/coupons/{code}/release",
    response_model=CouponRead,
    responses=WRITE_ERRORS,
    summary="Release a reservation (checkout abandoned): the coupon is issued again",
    description="With `profile_id`, only the coupon's owner may release it (403 `not_owner`).",
)
async def release_coupon(
    code: CodePath,
    body: ReleaseRequest,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> CouponRead:
    result = await loyalty.ReleaseCoupon(
        pb.ReleaseCouponRequest(
            code=code,
            order_id=body.order_id,
            profile_id=body.profile_id or "",
            idempotency_key=idempotency_key or "",
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return coupon_read(result.coupon)


@router.post(
    "/v1/coupons/{code}/revoke",
    response_model=CouponRead,
    responses=WRITE_ERRORS,
    summary="Revoke an issued or reserved coupon for good (reason and actor kept)",
    description="A live reservation ends; the coupon then validates as `revoked` and cannot be reserved or "
    "redeemed. Revoking a revoked coupon returns it unchanged; 409 `redeemed` / `expired` for coupons past use. "
    "`actor` defaults to the API key. Honours `Idempotency-Key`.",
)
async def revoke_coupon(
    code: CodePath,
    body: RevokeRequest,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> CouponRead:
    result = await loyalty.RevokeCoupon(
        pb.RevokeCouponRequest(
            code=code,
            reason=body.reason,
            actor=body.actor or f"api_key:{principal.key_id}",
            idempotency_key=idempotency_key or "",
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return coupon_read(result.coupon)


@router.get(
    "/v1/loyalty/members/{profile_id}/coupons",
    response_model=CouponPage,
    responses=READ_ERRORS,
    summary="A profile's coupon wallet, newest first, page by page",
)
async def member_coupons(
    profile_id: ProfileId,
    identity: IdentityDep,
    principal: LoyaltyReader,
    loyalty: LoyaltyDep,
    state: Annotated[
        list[CouponState] | None, Query(max_length=5, description="only coupons in these states (repeat it)")
    ] = None,
    limit: Limit = 50,
    cursor: CursorQuery = None,
) -> CouponPage:
    result = await loyalty.ListCoupons(
        pb.ListCouponsRequest(
            profile_id=await member_id(identity, profile_id, principal),
            states=[COUPON_STATE.value(s) for s in state or ()],
            page_size=limit,
            page_token=cursor or "",
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return CouponPage(coupons=[coupon_read(c) for c in result.coupons], next_cursor=result.next_page_token or None)
