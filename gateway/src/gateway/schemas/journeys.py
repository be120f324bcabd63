"""Journeys API shapes: journeys (drafts, published versions, status), validation issues, enrollments,
journey stats, test runs (one test profile, waits fast-forwarded) and dry runs (estimated entrants).

Definitions travel as JSON objects (the grammar is journey-svc/docs/definition.md), never as text;
timestamps are RFC 3339 with an offset; proto enums are lower-case strings."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from gateway.schemas.loyalty import Description, JsonObject, Name, text
from mcloud_common.ids import parse_uuid

MAX_DEFINITION_BYTES = 512 * 1024  # journey-svc's limit on a definition


def _definition(value: dict[str, Any]) -> dict[str, Any]:
    try:
        encoded = orjson.dumps(value)
    except TypeError as exc:  # orjson.JSONEncodeError: integers beyond 64 bits, text that is not Unicode
        raise ValueError(f"must be encodable as JSON: {exc}") from None
    if b"\\u0000" in encoded:
        raise ValueError("must not contain NUL characters")
    if len(encoded) > MAX_DEFINITION_BYTES:
        raise ValueError(f"must be at most {MAX_DEFINITION_BYTES} bytes as JSON")
    return value


Definition = Annotated[dict[str, Any], AfterValidator(_definition)]

_TYPE_VALUE = re.compile(r"^[a-z][a-z0-9_]{0,63}:.+$", re.DOTALL)


def _profile_ref(value: str) -> str:
    if parse_uuid(value) is None and not _TYPE_VALUE.match(value):
        raise ValueError("must be a profile id (UUID) or type:value, e.g. user_id:42")
    return value


ProfileRef = Annotated[text(512, min_length=1), AfterValidator(_profile_ref)]
EntryKey = text(200)

JourneyStatus = Literal["draft", "active", "paused", "archived", "unspecified"]
EnrollmentStatus = Literal["active", "completed", "exited", "unspecified"]
EnrollOutcome = Literal["enrolled", "duplicate", "reentry_blocked", "excluded", "unspecified"]

CART_EXAMPLE: dict[str, Any] = {
    "entry": {"type": "event", "event": "Product Added", "key": "cart_id"},
    "reentry": {"mode": "after_exit"},
    "holdout_percent": 10,
    "goal": {"event": "Order Completed", "within": "P7D", "exit": True},
    "exit_criteria": [{"event": "message.unsubscribed"}],
    "start": "wait-1h",
    "steps": [
        {"id": "wait-1h", "type": "wait", "duration": "PT1H", "next": "bought"},
        {"id": "bought", "type": "wait_for_event", "event": "Order Completed", "match_key": "cart_id",
         "timeout": "P1D", "next": "done", "timeout_next": "remind"},
        {"id": "remind", "type": "send", "channel": "email", "template": "cart-reminder", "next": "done"},
        {"id": "done", "type": "exit"},
    ],
}


# ---- journeys -------------------------------------------------------------------------------------


class JourneyWrite(BaseModel):
    """A journey's name, description and draft definition; a PUT replaces all three."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "Cart recovery", "description": "Remind after a day", "definition": CART_EXAMPLE}]
        },
    )

    name: Name
    description: Description = ""
    definition: Definition = Field(
        description="the journey graph as a JSON object (journey-svc/docs/definition.md); saved even when invalid"
    )


class ValidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"definition": CART_EXAMPLE}]})

    definition: Definition = Field(description="the definition to check; nothing is saved")


class IssueRead(BaseModel):
    """One precise problem in a definition."""

    code: str = Field(description="stable code, e.g. dangling_edge, unreachable_step, invalid_duration",
                      examples=["dangling_edge"])
    message: str
    step_id: str | None = Field(description="the step concerned, if any", examples=["remind"])
    path: str | None = Field(description="JSON pointer (RFC 6901) into the definition", examples=["/steps/2/next"])


class ValidationRead(BaseModel):
    valid: bool = Field(description="true when there is no error; warnings never block publishing")
    errors: list[IssueRead]
    warnings: list[IssueRead]


class JourneyRead(BaseModel):
    id: str
    name: str
    description: str
    status: JourneyStatus
    published_version: int = Field(description="latest published version (0: never published)")
    version: int | None = Field(description="the version `definition` is (the requested or the latest one)")
    definition: dict[str, Any] | None = Field(description="the published definition of `version`; null if none")
    draft: dict[str, Any] | None = Field(description="the editable draft; null when it is not a JSON object")
    draft_text: str | None = Field(
        None, description="the draft as stored when it is not a JSON object (e.g. saved as broken text over gRPC)"
    )
    has_unpublished_changes: bool = Field(description="the draft differs from the latest published version")
    created_at: datetime | None
    updated_at: datetime | None
    published_at: datetime | None


class JourneySummary(BaseModel):
    """A journey in a list (definitions left out: read the journey for them)."""

    id: str
    name: str
    description: str
    status: JourneyStatus
    published_version: int
    created_at: datetime | None
    updated_at: datetime | None
    published_at: datetime | None


class JourneyPage(BaseModel):
    journeys: list[JourneySummary] = Field(description="most recently updated first")
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null at the end")


class JourneySaved(BaseModel):
    """The saved journey and its draft's errors (the draft is stored even when invalid)."""

    journey: JourneyRead
    errors: list[IssueRead] = Field(description="empty when the draft is valid (publishable)")


class PublishResult(BaseModel):
    version: int = Field(description="the version published (the current one when the draft is unchanged)")
    journey: JourneyRead


# ---- enrollments ----------------------------------------------------------------------------------


class EnrollRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"profile_id": "user_id:42", "entry_key": "order-1001", "context": {"sku": "pegasus-40"}}]
        },
    )

    profile_id: ProfileRef = Field(
        description="identity profile id (UUID), or type:value (user_id:42, email:rachel@example.com)"
    )
    entry_key: EntryKey = Field(
        "", description="re-entry key (e.g. an order id): one enrollment per key; empty: the re-entry rule decides"
    )
    context: JsonObject = Field(default_factory=dict, description="entry data, available to steps as variables")


class EnrollmentRead(BaseModel):
    id: str
    journey_id: str
    journey_version: int
    profile_id: str
    status: EnrollmentStatus
    holdout: bool = Field(description="in the holdout group: counted for conversion, receives no actions")
    entry_key: str
    trigger: str = Field(description='how it entered: "event", "segment", "schedule", "tier_change", "api"')
    context: dict[str, Any]
    current_step_id: str | None
    waiting_until: datetime | None
    waiting_for_event: str | None
    converted: bool
    converted_at: datetime | None
    exit_reason: str | None = Field(description='once exited: "exit_criteria", "goal_reached", "archived"...')
    entered_at: datetime | None
    updated_at: datetime | None
    ended_at: datetime | None


class TraceStepRead(BaseModel):
    step_id: str
    step_type: str = Field(description='"entry", "wait", "send", ..., "goal", "exit"')
    outcome: str = Field(description='"entered", "next", "timeout", a branch label, "converted", an exit reason...')
    at: datetime | None


class EnrollmentDetail(EnrollmentRead):
    """An enrollment with the path it has taken."""

    trace: list[TraceStepRead] = Field(description="every step passed, oldest first")


class EnrollResult(BaseModel):
    outcome: EnrollOutcome = Field(
        description="enrolled (201); duplicate: same Idempotency-Key or entry_key, the existing enrollment; "
        "reentry_blocked: the re-entry rule forbids it now, the blocking enrollment; excluded: no enrollment"
    )
    enrollment: EnrollmentRead | None


class EnrollmentPage(BaseModel):
    enrollments: list[EnrollmentRead] = Field(description="newest first")
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null at the end")


# ---- stats ----------------------------------------------------------------------------------------


class OutcomeCountRead(BaseModel):
    outcome: str = Field(description='branch label, e.g. "yes", "no", "timeout", "A"')
    count: int


class StepStatsRead(BaseModel):
    step_id: str
    step_type: str
    name: str
    entered: int
    completed: int
    active: int = Field(description="in the step now")
    failed: int
    outcomes: list[OutcomeCountRead]


class GroupStatsRead(BaseModel):
    entered: int
    converted: int
    conversion_rate: float = Field(description="converted / entered, in [0, 1]")


class JourneyStats(BaseModel):
    journey_id: str
    version: int | None = Field(description="the version counted; null: all versions")
    entered: int = Field(description="treated group (holdout excluded)")
    active: int
    completed: int
    exited: int
    converted: int
    conversion_rate: float = Field(description="treated conversion, in [0, 1]")
    holdout: GroupStatsRead
    uplift: float = Field(description="conversion_rate - holdout conversion_rate")
    steps: list[StepStatsRead] = Field(description="treated group only")


# ---- test mode and dry runs -----------------------------------------------------------------------

EventName = text(200, min_length=1)
MAX_TEST_EVENTS = 200  # journey-svc fast-forwards at most 200 waits
Days = Annotated[int, Field(ge=1, le=365, description="look-back window in days (event entries)")]


class _TestProfile(BaseModel):
    profile_id: ProfileRef = Field(
        description="the test person: identity profile id (UUID), or type:value (user_id:42, email:rachel@example.com)"
    )
    context: JsonObject = Field(default_factory=dict, description="entry context, as an entry event would give it")
    events: list[EventName] = Field(
        default_factory=list,
        max_length=MAX_TEST_EVENTS,
        description="events the test person does when a wait_for_event step awaits them (each name is used once); "
        "other waits time out",
    )


class DraftTestRequest(_TestProfile):
    """Run a journey's saved draft for one test profile."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"profile_id": "user_id:42", "context": {"cart_id": "c-1"}, "events": ["Order Completed"]}]
        },
    )


class DefinitionTestRequest(_TestProfile):
    """Run an inline definition for one test profile; nothing is saved."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"definition": CART_EXAMPLE, "profile_id": "user_id:42", "context": {"cart_id": "c-1"}, "events": []}
            ]
        },
    )

    definition: Definition = Field(description="the definition to run; nothing is saved")


class EffectRead(BaseModel):
    """A side effect the run would perform (listed, never performed)."""

    step_id: str
    kind: str = Field(description='"send", "webhook", "update_profile", "award_points", "issue_coupon"')
    spec: dict[str, Any] = Field(description="the step's settings")


class JourneyTestResult(BaseModel):
    """The path one test profile takes with every wait fast-forwarded, and what would have been done."""

    status: str = Field(description='"completed", "exited", or "invalid" (the definition has `errors`: nothing ran)')
    exit_reason: str | None = Field(description='once exited: "goal_reached", "exit_criteria", "too_many_waits"...')
    waited_seconds: int = Field(description="total time the waits would have taken")
    trace: list[TraceStepRead] = Field(description="every step passed, in order")
    effects: list[EffectRead] = Field(description="side effects the run would perform, in order")
    errors: list[IssueRead] = Field(description="the definition's errors; empty when it ran")


class DraftDryRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"days": 30}]})

    days: Days = 30


class DefinitionDryRunRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"definition": CART_EXAMPLE, "days": 30}]}
    )

    definition: Definition = Field(description="the definition to estimate; nothing is saved")
    days: Days = 30


class DryRunRead(BaseModel):
    """How many people would have entered; nothing is changed."""

    estimated_entrants: int = Field(description="people who would have entered (holdout included)")
    estimated_holdout: int = Field(description="of them, held out by the journey's holdout_percent")
    total_profiles: int = Field(description="profiles considered")
    basis: str = Field(
        description='how the estimate was made, e.g. "people with Product Added in the last 30 days"; api and '
        "tier_change entries cannot be estimated (all counts 0)"
    )
