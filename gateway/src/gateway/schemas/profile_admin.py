"""Profile API shapes for writes: traits and tags, consent, explicit merge and split, merge history,
segment membership."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gateway.schemas.common import JsonDict
from gateway.schemas.profiles import IdentifierRead, ProfileRead

Tag = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class ProfileUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"traits": {"shoe_size": 38, "city": "Shanghai"}, "add_tags": ["marathoner"], "source": "crm"}
            ]
        },
    )

    traits: JsonDict = Field(default_factory=dict, description="traits to set on the profile")
    add_tags: list[Tag] = Field(default_factory=list, max_length=100)
    remove_tags: list[Tag] = Field(default_factory=list, max_length=100)
    source: Name = Field(
        "server",
        description="where the traits come from; decides conflicts with the tenant's trait source priority",
    )


ConsentState = Literal["granted", "denied", "withdrawn"]


class ConsentUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "channel": "email",
                    "purpose": "marketing",
                    "state": "granted",
                    "source": "signup_form",
                    "at": "2026-11-11T10:00:00Z",
                }
            ]
        },
    )

    channel: Name = Field(description="email, sms, push, in_app, webhook, whatsapp, wechat, or all")
    purpose: Name = Field("marketing", description="marketing, analytics, ... (lowercase, digits, _)")
    state: ConsentState
    source: Name = Field("server", description="where consent was collected")
    at: AwareDatetime | None = Field(
        None, description="when the person decided (default: now); an older decision never overrides a newer one"
    )


class ConsentResult(BaseModel):
    profile_id: str
    channel: str
    purpose: str
    state: ConsentState = Field(description="the state in force after this call")


class MergeRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [{"from": "email:rachel@example.com", "into": "user_id:42", "reason": "same customer, CRM"}]
        },
    )

    from_: str = Field(
        alias="from", min_length=1, max_length=1024, description="profile merged away: id or type:value"
    )
    into: str = Field(min_length=1, max_length=1024, description="surviving profile: id or type:value")
    reason: Reason


class SplitRequest(BaseModel):
    """Either `merge_id` (undo that merge: the merged profile comes back with what it brought) or
    `identifiers` (move them, and the events that carried them, to a new profile)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"merge_id": "17", "reason": "merged by mistake"},
                {"identifiers": [{"type": "email", "value": "tom@example.com"}], "reason": "shared account"},
            ]
        },
    )

    merge_id: str | None = Field(None, min_length=1, max_length=64, description="id from the merge history")
    identifiers: list[IdentifierRead] | None = Field(None, min_length=1, max_length=100)
    reason: Reason

    @model_validator(mode="after")
    def _one_way(self) -> SplitRequest:
        if (self.merge_id is None) == (self.identifiers is None):
            raise ValueError("give either merge_id or identifiers")
        return self


class SplitResult(BaseModel):
    original: ProfileRead
    split: ProfileRead = Field(description="the profile that came out")


class MergeRead(BaseModel):
    id: str
    from_profile_id: str
    into_profile_id: str
    reason: str = Field(description="'auto' for identity resolution, else the reason given")
    actor: str = Field(description="who asked: 'api_key:<id>' for merges through this API")
    merged_at: datetime | None
    undone_at: datetime | None = Field(description="set when a split undid the merge")
    moved_identifiers: list[IdentifierRead]


class MergeHistory(BaseModel):
    profile_id: str
    merges: list[MergeRead]


class ProfileSegments(BaseModel):
    profile_id: str
    segment_ids: list[str] = Field(description="segments the profile is a member of now")
