"""journey-svc configuration (env prefix JOURNEY_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from mcloud_common.settings import ServiceSettings


class JourneySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="JOURNEY_", extra="ignore", frozen=True)

    service_name: str = "journey"
    grpc_port: int = 50053
    identity_target: str = Field("127.0.0.1:50051", description="identity-svc gRPC address (profile updates)")
    loyalty_target: str = Field("127.0.0.1:50052", description="loyalty-svc gRPC address (points, coupons)")
    messaging_target: str = Field("127.0.0.1:50055", description="messaging-svc gRPC address (sends)")
    worker_batch: int = Field(500, ge=1, le=10000, description="enrollments a worker claims at once")
    schedule_interval_seconds: float = Field(60, gt=0, description="how often scheduled entries are looked at")
    worker_lease_seconds: float = Field(60, gt=0, description="a claimed enrollment comes due again after this")
