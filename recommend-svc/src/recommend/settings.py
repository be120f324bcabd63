"""recommend-svc configuration (env prefix RECOMMEND_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from mcloud_common.settings import ServiceSettings


class RecommendSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RECOMMEND_", extra="ignore", frozen=True)

    service_name: str = "recommend"
    grpc_port: int = 50054
