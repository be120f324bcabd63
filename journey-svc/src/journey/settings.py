"""journey-svc configuration (env prefix JOURNEY_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from mcloud_common.settings import ServiceSettings


class JourneySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="JOURNEY_", extra="ignore", frozen=True)

    service_name: str = "journey"
    grpc_port: int = 50053
