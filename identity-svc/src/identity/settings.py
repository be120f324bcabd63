"""identity-svc configuration (env prefix IDENTITY_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from mcloud_common.settings import ServiceSettings


class IdentitySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IDENTITY_", extra="ignore", frozen=True)

    service_name: str = "identity"
    grpc_port: int = 50051
