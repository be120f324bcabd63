"""Segment API shapes: rule-based audiences, their size, members and draft estimates. The rule tree
is identity's (documented in identity-svc/README.md); the gateway passes it through as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.schemas.common import JsonDict

RULES_DESCRIPTION = "rule tree (JSON object) over traits, computed traits and behaviour in time windows"
RULES_EXAMPLE: dict[str, Any] = {
    "all": [
        {
            "event": "Product Viewed",
            "within_days": 7,
            "count": {"op": "gte", "value": 3},
            "same": "product_id",
            "same_in_cart": True,
        },
        {"consent": "push", "purpose": "marketing", "state": "granted"},
    ]
}


class SegmentWrite(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Locked on a shoe",
                    "description": "viewed the same product 3+ times in 7 days and has it in the cart",
                    "rules": RULES_EXAMPLE,
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    rules: JsonDict = Field(description=RULES_DESCRIPTION)


class SegmentRead(BaseModel):
    id: str
    name: str
    description: str
    rules: dict[str, Any]
    member_count: int = Field(description="members at the last evaluation")
    created_at: datetime | None
    updated_at: datetime | None


class SegmentList(BaseModel):
    segments: list[SegmentRead]


class SegmentEstimateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rules": RULES_EXAMPLE}]})

    rules: JsonDict = Field(description=RULES_DESCRIPTION)


class SegmentEstimate(BaseModel):
    count: int = Field(description="profiles the rules match now")
    total: int = Field(description="profiles considered (merged and erased ones excluded)")


class SegmentMembersPage(BaseModel):
    segment_id: str
    profile_ids: list[str]
    next_page_token: str | None = Field(None, description="pass as `page_token` for the next page; null at the end")
