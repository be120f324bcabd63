"""Messaging people API shapes: preferences, the in-app inbox, unsubscribes, suppressions, channel
configuration (secrets write-only) and the best send time. Channels are lower-case strings; times
are RFC 3339 with an offset."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.schemas.loyalty import JsonObject, Text64, Uuid, text

Channel = Literal["email", "sms", "push", "in_app", "webhook"]
Minute = Field(ge=0, le=1439, description="minutes after local midnight")


class QuietHoursIO(BaseModel):
    """A daily window in the person's time zone; start > end spans midnight (1320..480 = 22:00-08:00)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    start_minute: int = Minute
    end_minute: int = Minute


class PreferencesWrite(BaseModel):
    """Listed channels are replaced, the others kept; fields left out are unchanged."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"channels": {"email": False, "sms": True}, "locale": "zh-CN",
                                         "timezone": "Asia/Shanghai",
                                         "quiet_hours": {"enabled": True, "start_minute": 1320, "end_minute": 480},
                                         "preferred_channel": "sms"}]},
    )

    channels: dict[Channel, bool] = Field(default_factory=dict, description="channel -> opted in")
    locale: Text64 | None = Field(None, description="BCP 47, e.g. zh-CN")
    timezone: Text64 | None = Field(None, description="IANA time zone, e.g. Asia/Shanghai")
    quiet_hours: QuietHoursIO | None = None
    preferred_channel: Channel | Literal["auto"] | None = Field(
        None, description="explicit channel; `auto` clears it (engagement decides)")


class ChannelPreferenceRead(BaseModel):
    channel: Channel
    opted_in: bool
    updated_at: datetime | None = None


class PreferencesRead(BaseModel):
    profile_id: str
    channels: list[ChannelPreferenceRead] = Field(description="explicit choices; a channel not listed is opted in")
    locale: str
    timezone: str
    quiet_hours: QuietHoursIO
    preferred_channel: Channel | None
    updated_at: datetime | None = None


class InboxMessageRead(BaseModel):
    id: str
    message_id: str
    title: str
    body: str
    image_url: str
    link_url: str
    data: dict[str, Any]
    read: bool
    created_at: datetime | None = None
    read_at: datetime | None = None
    expires_at: datetime | None = None


class InboxPage(BaseModel):
    messages: list[InboxMessageRead]
    unread_count: int
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null on the last")


class InboxReadWrite(BaseModel):
    """Either some inbox message ids or `all: true`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"all": True}]})

    ids: list[Uuid] = Field(default_factory=list, max_length=500)
    all: bool = False

    @model_validator(mode="after")
    def _one(self) -> InboxReadWrite:
        if not self.all and not self.ids:
            raise ValueError("give `ids` or `all: true`")
        return self


class InboxReadResult(BaseModel):
    marked: int = Field(description="messages newly marked read")
    unread_count: int


Source = Literal["link", "one_click", "preferences", "api", "reply_stop"]


class UnsubscribeWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel | None = Field(None, description="default: every channel")
    source: Source = "api"


class UnsubscribeRead(BaseModel):
    profile_id: str
    channel: Channel | Literal["all"]
    already: bool = Field(description="true when the person was already unsubscribed")


SuppressionReason = Literal["unsubscribe", "hard_bounce", "complaint", "invalid_address", "manual"]


class SuppressionWrite(BaseModel):
    """Block an address or a profile (at least one) on a channel (`all` = every channel)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"channel": "email", "address": "rachel@example.com",
                                         "reason": "complaint"}]},
    )

    channel: Channel | Literal["all"] = "all"
    address: text(1024) = Field("", description="email, phone, device token or URL")
    profile: text(512) = Field("", description="profile id (UUID) or type:value")
    reason: SuppressionReason = "manual"
    detail: text(2000) = ""

    @model_validator(mode="after")
    def _target(self) -> SuppressionWrite:
        if not self.address.strip() and not self.profile.strip():
            raise ValueError("give an `address` or a `profile`")
        return self


class SuppressionRead(BaseModel):
    id: str
    channel: Channel | Literal["all"]
    address: str
    profile_id: str
    reason: SuppressionReason
    detail: str
    created_at: datetime | None = None


class FrequencyCapIO(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_messages: int = Field(ge=1, le=10_000)
    window_hours: int = Field(ge=1, le=720)


class ProviderWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: text(64, min_length=1)
    settings: JsonObject = Field(default_factory=dict)
    secrets: JsonObject | None = Field(None, description="write-only; left out = keep the stored secrets")
    rate_limit_per_second: int = Field(0, ge=0, le=100_000, description="0 = unlimited")


class ProviderRead(BaseModel):
    provider: str
    settings: dict[str, Any]
    rate_limit_per_second: int


class ChannelConfigWrite(BaseModel):
    """A channel's provider and send policy; replaces the stored configuration (secrets left out are kept)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "provider": "smtp", "enabled": True,
            "settings": {"host": "smtp.example.com", "port": 587, "from_email": "shop@example.com", "start_tls": True},
            "secrets": {"username": "shop", "password": "..."}, "rate_limit_per_second": 20,
            "frequency_caps": [{"max_messages": 3, "window_hours": 168}], "fallbacks": [{"provider": "log"}]}]},
    )

    provider: text(64) = Field("", description="e.g. smtp, twilio, fcm, webhook, log (none for in_app)")
    enabled: bool = True
    settings: JsonObject = Field(default_factory=dict)
    secrets: JsonObject | None = Field(None, description="write-only; left out = keep the stored secrets")
    rate_limit_per_second: int = Field(0, ge=0, le=100_000, description="0 = unlimited")
    frequency_caps: list[FrequencyCapIO] = Field(default_factory=list, max_length=10)
    fallbacks: list[ProviderWrite] = Field(default_factory=list, max_length=5)
    cost_per_message_minor: int = Field(0, ge=0, le=10**12, description="what one sent message costs, in minor "
                                        "units of cost_currency (the KPI report's cost and ROI)")
    cost_currency: str | None = Field(None, pattern=r"^[A-Za-z]{3}$", description="ISO 4217; required with a cost")


class ChannelConfigRead(BaseModel):
    channel: Channel
    provider: str
    enabled: bool
    settings: dict[str, Any]
    rate_limit_per_second: int
    frequency_caps: list[FrequencyCapIO]
    fallbacks: list[ProviderRead]
    updated_at: datetime | None = None
    cost_per_message_minor: int = 0
    cost_currency: str | None = None


class BestSendTimeRead(BaseModel):
    best_hour_of_week: int = Field(description="0 = Monday 00:00-00:59 ... 167 = Sunday 23:00-23:59, local time")
    best_channel: Channel | None
    timezone: str
    next_send_at: datetime | None
    confidence: float
    sample_size: int
    is_default: bool = Field(description="true when tenant-wide defaults were used (too little known)")
