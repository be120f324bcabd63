"""Segment HTTP Tracking API shapes. The request models document the API (OpenAPI); the routes parse
bodies with orjson and validate by hand (gateway.tracking), which is much faster per event."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")

    messageId: str | None = Field(None, description="client-generated id; a repeated id is stored once")
    anonymousId: str | None = Field(None, description="required unless userId is present")
    userId: str | None = Field(None, description="required unless anonymousId is present")
    context: dict[str, Any] | None = Field(
        None,
        description="Segment context; context.channel (web, app, mini_program, pos, crm, ads, server) "
        "or context.library.name sets the channel",
    )
    integrations: dict[str, Any] | None = None
    timestamp: str | None = Field(None, description="ISO-8601 time the call happened on the client")
    originalTimestamp: str | None = None
    sentAt: str | None = Field(
        None, description="ISO-8601 client time of sending; enables clock-skew correction"
    )
    writeKey: str | None = Field(None, description="alternative to Basic auth")


class TrackCall(_Common):
    type: Literal["track"] | None = None
    event: str = Field(description="the action, e.g. 'Order Completed'")
    properties: dict[str, Any] | None = None


class IdentifyCall(_Common):
    type: Literal["identify"] | None = None
    traits: dict[str, Any] | None = None


class AliasCall(_Common):
    type: Literal["alias"] | None = None
    previousId: str
    userId: str


class PageCall(_Common):
    type: Literal["page"] | None = None
    name: str | None = None
    properties: dict[str, Any] | None = None


class ScreenCall(_Common):
    type: Literal["screen"] | None = None
    name: str | None = None
    properties: dict[str, Any] | None = None


class GroupCall(_Common):
    type: Literal["group"] | None = None
    groupId: str
    traits: dict[str, Any] | None = None


class BatchCall(_Common):
    type: Literal["track", "identify", "alias", "page", "screen", "group"]
    event: str | None = None
    name: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    previousId: str | None = None
    groupId: str | None = None


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    batch: list[BatchCall] = Field(description="up to 500 KB of calls; each at most 32 KB")
    context: dict[str, Any] | None = Field(None, description="merged into every call's context")
    sentAt: str | None = None
    writeKey: str | None = None


class Rejected(BaseModel):
    index: int = Field(description="position of the call in `batch`")
    code: str
    detail: str


class TrackingResponse(BaseModel):
    success: bool = Field(True, description="as Segment answers; true when the request was processed")
    accepted: int = Field(description="calls stored now")
    duplicates: int = Field(description="calls whose messageId was already stored (stored once)")
    rejected: list[Rejected] = Field(default_factory=list, description="invalid calls, by index")
