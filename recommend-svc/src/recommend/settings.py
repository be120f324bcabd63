"""recommend-svc configuration (env prefix RECOMMEND_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from mcloud_common.settings import ServiceSettings


class RecommendSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RECOMMEND_", extra="ignore", frozen=True)

    service_name: str = "recommend"
    grpc_port: int = 50054
    identity_target: str = Field("127.0.0.1:50051", description="identity-svc gRPC address (favourite category "
                                 "of people new to recommend)")
    cache_ttl_seconds: int = Field(600, ge=1, description="how long a person's served lists stay cached in Valkey "
                                   "(feedback from the person drops them at once)")
    refresh_seconds: float = Field(10, gt=0, description="how often each replica checks whether a tenant's "
                                   "catalogue, settings or model changed (and reloads what did)")
    popularity_seconds: float = Field(300, gt=0, description="how often popularity and trending are recomputed "
                                      "from the log (in between, the feedback a replica records counts at once)")
    retrain_interval_seconds: float = Field(3600, gt=0, description="scheduled model training per tenant with new "
                                            "interactions")
    intent_sweep_seconds: float = Field(15, gt=0, description="how often carts are checked for intents that "
                                        "locked with time")
    served_flush_seconds: float = Field(0.25, gt=0, description="served lists are written (recommendation.served "
                                        "events, impressions) in batches this often")
    history_limit: int = Field(200, ge=10, le=5000, description="a person's latest interactions read per request")
    als_factors: int = Field(64, ge=4, le=512)
    als_iterations: int = Field(15, ge=1, le=100)
    als_regularization: float = Field(10.0, ge=0, description="ALS L2 regularization (10: robust on small and "
                                      "mid-sized catalogues, see EVALUATION.md)")
    als_alpha: float = Field(2.0, gt=0)
    neighbors: int = Field(50, ge=5, le=500, description="similar items kept per item")
    served_retention_days: int = Field(30, ge=1, description="served lists kept for click attribution and stats")
