"""loyalty-svc configuration (env prefix LOYALTY_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from mcloud_common.settings import ServiceSettings


class LoyaltySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_", extra="ignore", frozen=True)

    service_name: str = "loyalty"
    grpc_port: int = 50052
    # every hot statement is a keyed lookup or a batch write through unnest(): one generic plan serves
    # all (re-planning the big write statement each time costs more than running it)
    db_server_settings: dict[str, str] = Field(default_factory=lambda: {"plan_cache_mode": "force_generic_plan"})
