"""Settings base for every service (pydantic-settings). Built at start-up, never at import."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ProcessSettings(BaseSettings):
    """What every mcloud process has: its own database, Valkey, logging and tracing."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str = "service"
    database_url: str = Field(description="PostgreSQL URL of this process's own database")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Valkey/Redis URL of the event bus")
    db_pool_size: int = Field(10, ge=1, le=200)
    db_server_settings: dict[str, str] = Field(
        default_factory=dict, description="PostgreSQL session settings of every pooled connection (JSON object)")
    log_level: str = "INFO"
    log_json: bool = True
    otlp_endpoint: str | None = Field(None, description="OTLP/gRPC collector; tracing export is off when unset")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus scrape endpoint /metrics (0: off)")
    metrics_host: str = Field("127.0.0.1", description="address the metrics endpoint binds")
    metrics_sample_seconds: float = Field(10, gt=0, le=3600, description="how often gauges that need a query "
                                          "(consumer lag, outbox backlog, queue depths) are sampled")
    clock_offset_file: str | None = Field(None, description="test hook: seconds to shift this process's clock")

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, v: str) -> str:
        if not v.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
            raise ValueError("must be a postgresql:// URL")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_only(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// URL")
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.upper()
        if v not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return v



class ServiceSettings(ProcessSettings):
    """Settings of a gRPC service. Each service subclasses this with `env_prefix="<NAME>_"`,
    e.g. IDENTITY_DATABASE_URL, IDENTITY_GRPC_PORT."""

    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(0, ge=0, le=65535)
    stream_shards: int = Field(4, ge=1, le=1024, description="shards per producer stream")
    relay_enabled: bool = Field(True, description="run the outbox relay in this process (off: another runs it)")
    stream_retention_hours: float = Field(168, gt=0, description="longest an entry stays on this service's streams")

    @property
    def grpc_address(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port}"
