"""The LoyaltyService: one mixin per area of the API over shared state (ServicerBase)."""

from __future__ import annotations

from loyalty.grpc_api.coupons_api import CouponsApi
from loyalty.grpc_api.members_api import MembersApi
from loyalty.grpc_api.programs_api import ProgramsApi
from loyalty.grpc_api.rewards_api import RewardsApi
from mcloud.loyalty.v1 import loyalty_pb2_grpc


class LoyaltyServicer(ProgramsApi, MembersApi, CouponsApi, RewardsApi, loyalty_pb2_grpc.LoyaltyServiceServicer):
    pass
