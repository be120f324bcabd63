"""Gateway configuration (pydantic-settings, env prefix GATEWAY_). Built at start-up, never at import."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from mcloud_common.settings import ProcessSettings

_TARGET = re.compile(r"^(dns:///?|unix:|ipv4:|ipv6:)?[\w.\-\[\]:/]+:\d{1,5}$")
SERVICES = ("identity", "loyalty", "journey", "recommend", "messaging")


class GatewaySettings(ProcessSettings):
    """Every field can be set as GATEWAY_<FIELD>, e.g. GATEWAY_DATABASE_URL, GATEWAY_HTTP_PORT.
    Database, Valkey, logging and tracing settings (and their validation) come from ProcessSettings."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    service_name: str = "gateway"
    database_url: str = Field(description="PostgreSQL URL of the gateway's own database (tenants, API keys)")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Valkey/Redis URL (rate limits)")
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    identity_target: str = "127.0.0.1:50051"
    loyalty_target: str = "127.0.0.1:50052"
    journey_target: str = "127.0.0.1:50053"
    recommend_target: str = "127.0.0.1:50054"
    messaging_target: str = "127.0.0.1:50055"
    grpc_timeout_seconds: float = Field(5.0, gt=0, le=300, description="default deadline of service calls")
    clerk_timeout_seconds: float = Field(
        1.0, gt=0, le=30, description="deadline of each service call behind the store-clerk view"
    )
    readiness_timeout_seconds: float = Field(1.0, gt=0, le=30, description="deadline of each /readyz check")
    rate_limit_per_second: float = Field(200.0, gt=0, description="tokens refilled per second, per API key")
    rate_limit_burst: int = Field(400, ge=1, description="bucket size: requests allowed in a burst, per key")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="request body limit outside the tracking API")
    max_call_bytes: int = Field(32 * 1024, ge=1024, description="Segment limit for one call (32 KB)")
    max_batch_bytes: int = Field(500 * 1024, ge=1024, description="Segment limit for a batch request (500 KB)")
    key_cache_seconds: float = Field(5.0, ge=0, le=300, description="how long an authenticated key is cached")

    @field_validator("identity_target", "loyalty_target", "journey_target", "recommend_target",
                     "messaging_target")
    @classmethod
    def _host_port(cls, v: str) -> str:
        if not _TARGET.match(v):
            raise ValueError("must be a gRPC target host:port, e.g. 127.0.0.1:50051")
        return v

    @model_validator(mode="after")
    def _limits_consistent(self) -> GatewaySettings:
        if self.max_call_bytes > self.max_batch_bytes:
            raise ValueError("max_call_bytes must not exceed max_batch_bytes")
        if self.rate_limit_burst < 1:
            raise ValueError("rate_limit_burst must be at least 1")
        return self

    def targets(self) -> dict[str, str]:
        """gRPC target per service name."""
        return {name: getattr(self, f"{name}_target") for name in SERVICES}
