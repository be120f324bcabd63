"""Rewards RPCs (being built)."""

from __future__ import annotations

from loyalty.grpc_api.base import ServicerBase


class RewardsApi(ServicerBase):
    pass
