"""messaging-svc configuration (env prefix MESSAGING_)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from mcloud_common.settings import ServiceSettings


class MessagingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MESSAGING_", extra="ignore", frozen=True)

    service_name: str = "messaging"
    grpc_port: int = 50055
    identity_target: str = Field("127.0.0.1:50051", description="identity-svc gRPC address (profiles, segments)")
    tracking_secret: SecretStr = Field(
        SecretStr("mcloud-dev-tracking-secret-change-me"),
        description="HMAC key signing open/click/unsubscribe links; set a long random value in production")
    public_url: str = Field("http://127.0.0.1:8080", description="the gateway's public base URL, used in links")
    send_batch: int = Field(200, ge=1, le=5000, description="queued messages a sender claims at once")
    send_concurrency: int = Field(64, ge=1, le=1000, description="provider calls in flight per sender")
    send_lease_seconds: float = Field(120, gt=0, description="a claimed message comes due again after this")
    send_interval_seconds: float = Field(0.2, gt=0, description="how often an idle sender looks for due messages")
    max_attempts: int = Field(5, ge=1, le=50, description="tries before a message is dead-lettered as failed")
    retry_base_seconds: float = Field(30, gt=0, description="first retry delay; doubles per attempt")
    send_loops: int = Field(2, ge=1, le=16, description="send batches in flight per process (one is rendered and "
                            "recorded while another waits on providers)")
    smtp_connections: int = Field(16, ge=1, le=256, description="kept-open SMTP connections per tenant setup")
    db_server_settings: dict[str, str] = Field(
        # the queue tables grow from empty within minutes: a generic plan cached while they were empty
        # (sequential scans) would stay for the connection's life, so plan every execution
        default_factory=lambda: {"plan_cache_mode": "force_custom_plan"},
        description="PostgreSQL session settings of every pooled connection (JSON object)")
    campaign_batch: int = Field(1000, ge=1, le=10000, description="default recipients per campaign batch")
