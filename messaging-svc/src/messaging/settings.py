"""messaging-svc configuration (env prefix MESSAGING_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from mcloud_common.settings import ServiceSettings


class MessagingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MESSAGING_", extra="ignore", frozen=True)

    service_name: str = "messaging"
    grpc_port: int = 50055
