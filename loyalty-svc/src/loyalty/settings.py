"""loyalty-svc configuration (env prefix LOYALTY_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from mcloud_common.settings import ServiceSettings


class LoyaltySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_", extra="ignore", frozen=True)

    service_name: str = "loyalty"
    grpc_port: int = 50052
