"""Privacy and tracking-plan shapes: erasure result, tracking plan and its violation counts. The export
itself is identity's JSON document, passed through."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JsonSchema = dict[str, Any] | bool


class ErasureRead(BaseModel):
    erased: bool = Field(description="true: the person is erased (now, or by an earlier request)")
    profile_id: str | None = Field(
        None, description="the surviving profile erased; null when the identifier already belonged to an erased person"
    )


class TrackingPlan(BaseModel):
    """JSON Schema (Draft 2020-12) per track event's properties and for identify traits."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "mode": "block",
                    "events": {
                        "Order Completed": {
                            "type": "object",
                            "properties": {"revenue": {"type": "number"}, "currency": {"enum": ["CNY", "USD"]}},
                            "required": ["revenue"],
                        }
                    },
                    "traits": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}},
                    "allow_unplanned": True,
                }
            ]
        },
    )

    mode: Literal["block", "flag"] = Field(
        "flag", description="block: violating events are rejected (tracking_plan_violation); flag: stored and counted"
    )
    events: dict[str, JsonSchema] = Field(
        default_factory=dict, description="event name -> JSON Schema of its properties"
    )
    traits: JsonSchema | None = Field(None, description="JSON Schema of identify traits (none: not checked)")
    allow_unplanned: bool = Field(True, description="false: track events not in `events` are violations")


class TrackingPlanViolationRead(BaseModel):
    event: str = Field(description="track event name, or $identify for traits")
    outcome: Literal["blocked", "flagged"]
    count: int
    last_error: str = Field(description="what the latest violation broke, naming the failing path")
    last_seen_at: datetime | None


class TrackingPlanRead(BaseModel):
    plan: TrackingPlan | None = Field(description="null when the tenant has no plan")
    violations: list[TrackingPlanViolationRead] = Field(
        description="counts per event and outcome, kept across plan changes"
    )
