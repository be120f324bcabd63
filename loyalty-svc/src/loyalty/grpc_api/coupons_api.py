"""Coupon campaigns and coupons: UpsertCouponCampaign, GetCouponCampaign, ListCouponCampaigns,
AddCouponCodes, IssueCoupon, GetCoupon, ValidateCoupon, ReserveCoupon, RedeemCoupon, ReleaseCoupon,
RevokeCoupon, ListCoupons.

Errors callers can rely on (the `mcloud-error-code` trailer): NOT_FOUND campaign_not_found /
coupon_not_found; RESOURCE_EXHAUSTED campaign_exhausted / profile_limit_reached / pool_empty;
FAILED_PRECONDITION campaign_not_active, not_a_pool_campaign, code_source_immutable and the usage
reasons (not_started, expired, redeemed, reserved, revoked; with a RedeemCoupon order, also
min_order_not_met, no_eligible_lines, currency_mismatch); PERMISSION_DENIED not_owner (a coupon
used or released by a profile that does not own it). ValidateCoupon never fails for those: it answers them as
`reason`.
"""

from __future__ import annotations

from loyalty.domain import coupons as rules
from loyalty.grpc_api.base import Context, ServicerBase, require_uuid
from loyalty.repo import coupons as coupon_repo
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.errors import InvalidArgument
from mcloud_common.grpc_server import tenant_id
from mcloud_common.idempotency import once


def _code(code: str) -> str:
    norm = rules.normalize_code(code)
    if not norm:
        raise InvalidArgument("code is required", code="invalid_code", field="code")
    return norm


def _order_id(order_id: str) -> str:
    if not order_id.strip():
        raise InvalidArgument("order_id is required", code="invalid_order_id", field="order_id")
    return order_id


class CouponsApi(ServicerBase):
    async def UpsertCouponCampaign(self, request: pb.UpsertCouponCampaignRequest, context: Context):
        tenant = tenant_id(context)
        rules.check_campaign(request.campaign)
        async with self._pool.acquire() as conn:
            async def run() -> pb.UpsertCouponCampaignResponse:
                campaign = await coupon_repo.upsert_campaign(conn, tenant, request.campaign, now=self._clock.now())
                return pb.UpsertCouponCampaignResponse(campaign=campaign)

            return await once(conn, tenant, "UpsertCouponCampaign", request.idempotency_key,
                              pb.UpsertCouponCampaignResponse, run)

    async def GetCouponCampaign(self, request: pb.GetCouponCampaignRequest, context: Context):
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn:
            campaign = await coupon_repo.get_campaign(conn, tenant, request.campaign_id)
        return pb.GetCouponCampaignResponse(campaign=campaign)

    async def ListCouponCampaigns(self, request: pb.ListCouponCampaignsRequest, context: Context):
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn:
            campaigns, token = await coupon_repo.list_campaigns(conn, tenant, page_size=request.page_size,
                                                                page_token=request.page_token)
        return pb.ListCouponCampaignsResponse(campaigns=campaigns, next_page_token=token)

    async def AddCouponCodes(self, request: pb.AddCouponCodesRequest, context: Context):
        tenant = tenant_id(context)
        require_uuid(request.campaign_id, "campaign_id")
        async with self._pool.acquire() as conn:
            async def run() -> pb.AddCouponCodesResponse:
                return await coupon_repo.add_codes(conn, tenant, request.campaign_id, request.codes,
                                                   now=self._clock.now())

            return await once(conn, tenant, "AddCouponCodes", request.idempotency_key, pb.AddCouponCodesResponse, run)

    async def IssueCoupon(self, request: pb.IssueCouponRequest, context: Context):
        tenant = tenant_id(context)
        require_uuid(request.campaign_id, "campaign_id")
        require_uuid(request.profile_id, "profile_id")
        # Idempotency lives on the coupon itself (its issue key, shared with rewards and journeys), so a
        # retry gets the same coupon as it is now rather than a stored copy of the first answer.
        async with self._pool.acquire() as conn:
            coupon = await coupon_repo.issue(conn, tenant, request.campaign_id, request.profile_id,
                                             source=request.source or "manual", key=request.idempotency_key,
                                             now=self._clock.now(), shards=self._shards)
        return pb.IssueCouponResponse(coupon=coupon)

    async def GetCoupon(self, request: pb.GetCouponRequest, context: Context):
        tenant = tenant_id(context)
        code = _code(request.code)
        async with self._pool.acquire() as conn:
            coupon = await coupon_repo.get_coupon(conn, tenant, code, now=self._clock.now())
        return pb.GetCouponResponse(coupon=coupon)

    async def ValidateCoupon(self, request: pb.ValidateCouponRequest, context: Context):
        tenant = tenant_id(context)
        code = _code(request.code)
        require_uuid(request.profile_id, "profile_id")
        order = request.order
        rules.check_order(order)
        async with self._pool.acquire() as conn:
            return await coupon_repo.validate(conn, tenant, code, request.profile_id, order, now=self._clock.now())

    async def ReserveCoupon(self, request: pb.ReserveCouponRequest, context: Context):
        tenant = tenant_id(context)
        code = _code(request.code)
        require_uuid(request.profile_id, "profile_id")
        order_id = _order_id(request.order_id)
        hold = request.hold_seconds or rules.DEFAULT_HOLD_SECONDS
        if not 0 < hold <= rules.MAX_HOLD_SECONDS:
            raise InvalidArgument(f"hold_seconds must be 1..{rules.MAX_HOLD_SECONDS} (0 = 900)",
                                  code="invalid_hold_seconds", field="hold_seconds")
        async with self._pool.acquire() as conn:
            async def run() -> pb.ReserveCouponResponse:
                coupon = await coupon_repo.reserve(conn, tenant, code, request.profile_id, order_id,
                                                   hold_seconds=hold, now=self._clock.now())
                return pb.ReserveCouponResponse(coupon=coupon)

            return await once(conn, tenant, "ReserveCoupon", request.idempotency_key, pb.ReserveCouponResponse, run)

    async def RedeemCoupon(self, request: pb.RedeemCouponRequest, context: Context):
        tenant = tenant_id(context)
        code = _code(request.code)
        require_uuid(request.profile_id, "profile_id")
        order_id = _order_id(request.order_id)
        order = request.order if request.HasField("order") else None
        if order is not None:  # the service prices the discount: the caller's figure is ignored
            rules.check_order(order)
            if order.order_id and order.order_id != order_id:
                raise InvalidArgument("order.order_id must equal order_id", code="order_id_mismatch",
                                      field="order.order_id")
        elif request.discount_minor < 0:
            raise InvalidArgument("discount_minor cannot be negative", code="invalid_discount_minor",
                                  field="discount_minor")
        async with self._pool.acquire() as conn:
            async def run() -> pb.RedeemCouponResponse:
                done = await coupon_repo.redeem(conn, tenant, code, request.profile_id, order_id,
                                                request.discount_minor, request.currency, order=order,
                                                now=self._clock.now(), shards=self._shards)
                return pb.RedeemCouponResponse(coupon=done.coupon, discount_minor=done.discount_minor,
                                               currency=done.currency)

            return await once(conn, tenant, "RedeemCoupon", request.idempotency_key, pb.RedeemCouponResponse, run)

    async def ReleaseCoupon(self, request: pb.ReleaseCouponRequest, context: Context):
        tenant = tenant_id(context)
        code = _code(request.code)
        order_id = _order_id(request.order_id)
        if request.profile_id:
            require_uuid(request.profile_id, "profile_id")
        async with self._pool.acquire() as conn:
            async def run() -> pb.ReleaseCouponResponse:
                coupon = await coupon_repo.release(conn, tenant, code, order_id, profile_id=request.profile_id,
                                                   now=self._clock.now())
                return pb.ReleaseCouponResponse(coupon=coupon)

            return await once(conn, tenant, "ReleaseCoupon", request.idempotency_key, pb.ReleaseCouponResponse, run)

    async def RevokeCoupon(self, request: pb.RevokeCouponRequest, context: Context):
        tenant = tenant_id(context)
        code = _code(request.code)
        reason, actor = rules.check_revoke(request.reason, request.actor)
        async with self._pool.acquire() as conn:
            async def run() -> pb.RevokeCouponResponse:
                coupon = await coupon_repo.revoke(conn, tenant, code, reason=reason, actor=actor,
                                                  now=self._clock.now())
                return pb.RevokeCouponResponse(coupon=coupon)

            return await once(conn, tenant, "RevokeCoupon", request.idempotency_key, pb.RevokeCouponResponse, run)

    async def ListCoupons(self, request: pb.ListCouponsRequest, context: Context):
        tenant = tenant_id(context)
        require_uuid(request.profile_id, "profile_id")
        async with self._pool.acquire() as conn:
            coupons, token = await coupon_repo.list_coupons(
                conn, tenant, request.profile_id, states=list(request.states), page_size=request.page_size,
                page_token=request.page_token, now=self._clock.now())
        return pb.ListCouponsResponse(coupons=coupons, next_page_token=token)
