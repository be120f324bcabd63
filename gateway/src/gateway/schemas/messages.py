"""Sending API shapes: one message, a batch, campaigns to a segment, test sends; messages with their
status and timeline. Channels and statuses are lower-case strings; times are RFC 3339 with an offset."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.schemas.loyalty import JsonObject, Name, Text64, Text200, Uuid, text

SendChannel = Literal["email", "sms", "push", "in_app", "webhook", "best"]
Key = text(200, min_length=1)


class AttributionIO(BaseModel):
    model_config = ConfigDict(extra="forbid")

    journey_id: Text64 = ""
    journey_version: int = Field(0, ge=0, le=2**31 - 1)
    enrollment_id: Text64 = ""
    step_id: Text64 = ""
    campaign_id: Text64 = ""


class MessageSend(BaseModel):
    """One templated message to one person."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "profile": "email:rachel@example.com", "template_id": "0193a0c2-8f00-7000-8000-000000000001",
            "channel": "email", "variables": {"coupon": {"code": "RUN10"}}, "idempotency_key": "welcome-42"}]},
    )

    profile: text(512, min_length=1) = Field(description="profile id (UUID) or type:value (email:..., user_id:...)")
    template_id: Uuid
    template_version: int = Field(0, ge=0, le=2**31 - 1, description="0 = latest")
    channel: SendChannel | None = Field(None, description="default: the template's channel; `best` picks per person")
    locale: Text64 = Field("", description="default: the person's locale, then the template's default")
    variables: JsonObject = Field(default_factory=dict)
    idempotency_key: Key = Field(description="the same key never sends twice")
    transactional: bool = Field(False, description="receipts and resets: skips opt-outs, caps and quiet hours")
    scheduled_at: AwareDatetime | None = None
    quiet_hours: Literal["hold", "drop"] = "hold"
    attribution: AttributionIO | None = None


class MessageBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[MessageSend] = Field(min_length=1, max_length=1000)


class MessageRead(BaseModel):
    id: str
    profile_id: str
    channel: str
    template_id: str
    template_version: int
    locale: str
    status: Literal["queued", "sent", "delivered", "opened", "clicked", "bounced", "failed", "suppressed",
                    "dropped"]
    block_reason: str | None = None
    block_detail: str | None = None
    transactional: bool
    attribution: AttributionIO
    idempotency_key: str
    scheduled_at: datetime | None = None
    queued_at: datetime | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    opened_at: datetime | None = None
    clicked_at: datetime | None = None
    ended_at: datetime | None = None
    attempts: int
    provider: str | None = None
    provider_message_id: str | None = None
    error: str | None = None


class BatchItemResult(BaseModel):
    message: MessageRead | None = None
    error: dict[str, str] | None = Field(None, description="{code, detail} when this item was refused")


class BatchResult(BaseModel):
    results: list[BatchItemResult]


class MessagePage(BaseModel):
    items: list[MessageRead]
    next_cursor: str | None = None


class MessageCampaignWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    segment_id: Uuid
    template_id: Uuid
    template_version: int = Field(0, ge=0, le=2**31 - 1)
    channel: SendChannel | None = None
    variables: JsonObject = Field(default_factory=dict)
    batch_size: int = Field(0, ge=0, le=10_000, description="recipients per batch (0 = service default)")
    scheduled_at: AwareDatetime | None = None
    quiet_hours: Literal["hold", "drop"] = "hold"


class MessageCampaignRead(BaseModel):
    id: str
    name: str
    segment_id: str
    channel: str
    template_id: str
    template_version: int
    status: Literal["scheduled", "running", "completed", "cancelled", "failed"]
    audience_size: int
    queued: int
    blocked: int
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


class TestSend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Text200 = Field("", description="email address, phone, device token or URL by the template's channel")
    profile: text(512) = Field("", description="fill profile placeholders from this person (and send to them)")
    version: int = Field(0, ge=0, le=2**31 - 1)
    locale: Text64 = ""
    variables: JsonObject = Field(default_factory=dict)
