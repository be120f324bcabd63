"""The rewards catalogue: UpsertReward, ListRewards, RedeemReward, GetRewardRedemption,
UpdateRewardRedemption, ListRewardRedemptions.

Errors callers can rely on (the `mcloud-error-code` trailer): NOT_FOUND reward_not_found /
redemption_not_found / not_a_member; FAILED_PRECONDITION insufficient_points, out_of_stock,
tier_too_low, reward_disabled, member_not_active, invalid_transition, not_cancellable; for coupon
rewards the coupon errors (campaign_not_active, RESOURCE_EXHAUSTED campaign_exhausted ...) refuse
the whole redemption.
"""

from __future__ import annotations

from loyalty.domain import rewards as rules
from loyalty.grpc_api.base import Context, ServicerBase, require_uuid
from loyalty.repo import rewards as reward_repo
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.grpc_server import tenant_id
from mcloud_common.idempotency import once


class RewardsApi(ServicerBase):
    async def UpsertReward(self, request: pb.UpsertRewardRequest, context: Context) -> pb.UpsertRewardResponse:
        tenant = tenant_id(context)
        program = await self._programs.get(self._pool, tenant, request.reward.program_id)
        rules.check_reward(program, request.reward)
        async with self._pool.acquire() as conn:
            async def run() -> pb.UpsertRewardResponse:
                reward = await reward_repo.upsert(conn, tenant, program, request.reward, now=self._clock.now())
                return pb.UpsertRewardResponse(reward=reward)

            return await once(conn, tenant, "UpsertReward", request.idempotency_key, pb.UpsertRewardResponse, run)

    async def ListRewards(self, request: pb.ListRewardsRequest, context: Context) -> pb.ListRewardsResponse:
        tenant = tenant_id(context)
        if request.profile_id:
            require_uuid(request.profile_id, "profile_id")
        program = await self._programs.get(self._pool, tenant, request.program_id)
        async with self._pool.acquire() as conn:
            rewards, token = await reward_repo.list_rewards(
                conn, tenant, program, page_size=request.page_size, page_token=request.page_token,
                profile_id=request.profile_id, eligible_only=request.eligible_only, now=self._clock.now())
        return pb.ListRewardsResponse(rewards=rewards, next_page_token=token)

    async def RedeemReward(self, request: pb.RedeemRewardRequest, context: Context) -> pb.RedeemRewardResponse:
        tenant = tenant_id(context)
        require_uuid(request.profile_id, "profile_id")
        require_uuid(request.reward_id, "reward_id")
        program = await self._programs.get(self._pool, tenant, request.program_id)
        now = self._clock.now()

        async def run() -> pb.RedeemRewardResponse:
            async with conn.transaction():
                redemption, member = await reward_repo.redeem(conn, tenant, program, request, now=now,
                                                              shards=self._shards)
            return pb.RedeemRewardResponse(redemption=redemption, member=member)

        async with self._pool.acquire() as conn:
            return await once(conn, tenant, "RedeemReward", request.idempotency_key, pb.RedeemRewardResponse, run)

    async def GetRewardRedemption(self, request: pb.GetRewardRedemptionRequest,
                                  context: Context) -> pb.GetRewardRedemptionResponse:
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn:
            row = await reward_repo.get_redemption(conn, tenant, request.redemption_id)
        return pb.GetRewardRedemptionResponse(redemption=reward_repo.redemption_message(row))

    async def UpdateRewardRedemption(self, request: pb.UpdateRewardRedemptionRequest,
                                     context: Context) -> pb.UpdateRewardRedemptionResponse:
        tenant = tenant_id(context)
        rules.check_update(request)
        now = self._clock.now()
        async with self._pool.acquire() as conn:
            # the program first (for the refund), from an unlocked read; the repo re-reads the row locked
            row = await reward_repo.get_redemption(conn, tenant, request.redemption_id)
            program = await self._programs.get(self._pool, tenant, str(row["program_id"]))

            async def run() -> pb.UpdateRewardRedemptionResponse:
                async with conn.transaction():
                    redemption = await reward_repo.update_redemption(conn, tenant, program, request, now=now,
                                                                     shards=self._shards)
                return pb.UpdateRewardRedemptionResponse(redemption=redemption)

            return await once(conn, tenant, "UpdateRewardRedemption", request.idempotency_key,
                              pb.UpdateRewardRedemptionResponse, run)

    async def ListRewardRedemptions(self, request: pb.ListRewardRedemptionsRequest,
                                    context: Context) -> pb.ListRewardRedemptionsResponse:
        tenant = tenant_id(context)
        require_uuid(request.profile_id, "profile_id")
        program = await self._programs.get(self._pool, tenant, request.program_id)
        async with self._pool.acquire() as conn:
            redemptions, token = await reward_repo.list_redemptions(
                conn, tenant, program, request.profile_id, page_size=request.page_size,
                page_token=request.page_token)
        return pb.ListRewardRedemptionsResponse(redemptions=redemptions, next_page_token=token)
