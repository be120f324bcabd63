"""Profile API shapes (reads)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class IdentifierRead(BaseModel):
    type: str = Field(examples=["user_id"])
    value: str = Field(examples=["42"])


class ConsentRead(BaseModel):
    channel: str = Field(examples=["email"])
    purpose: str = Field(examples=["marketing"])
    state: str = Field(description="granted, denied or withdrawn", examples=["granted"])
    source: str = Field(examples=["signup_form"])
    at: datetime | None = Field(description="when the person gave or refused consent")


class ProfileRead(BaseModel):
    id: str
    identifiers: list[IdentifierRead]
    traits: dict[str, Any]
    tags: list[str]
    lifecycle_stage: str
    computed: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None
    merged_from: list[str] = Field(description="profiles merged into this one")
    consents: list[ConsentRead] = Field(default_factory=list, description="latest consent per channel and purpose")
    segment_ids: list[str] = Field(default_factory=list, description="segments the profile is in now")


class ProfileEventRead(BaseModel):
    id: str
    type: str = Field(description="track, identify, alias, page, screen or group")
    name: str
    properties: dict[str, Any]
    timestamp: datetime | None
    channel: str
    message_id: str


class ProfileEventsPage(BaseModel):
    profile_id: str
    events: list[ProfileEventRead]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null at the end")
