"""Journeys API <-> journey proto: definitions as JSON objects both ways, messages to read models.
Enums travel as lower-case strings ("active", "reentry_blocked"); unset strings and times become null."""

from __future__ import annotations

from typing import Any

import grpc
import orjson

from gateway.loyalty import EnumNames, json_text
from gateway.profiles import time_field
from gateway.schemas.journeys import (
    DryRunRead,
    EffectRead,
    EnrollmentDetail,
    EnrollmentRead,
    GroupStatsRead,
    IssueRead,
    JourneyRead,
    JourneyStats,
    JourneySummary,
    JourneyTestResult,
    OutcomeCountRead,
    StepStatsRead,
    TraceStepRead,
    ValidationRead,
)
from mcloud.journey.v1 import journey_pb2 as pb
from mcloud_common.grpc_server import ERROR_CODE_METADATA

JOURNEY_STATUS = EnumNames(pb.JourneyStatus, "JOURNEY_STATUS_")
ENROLLMENT_STATUS = EnumNames(pb.EnrollmentStatus, "ENROLLMENT_STATUS_")
ENROLL_OUTCOME = EnumNames(pb.EnrollOutcome, "ENROLL_OUTCOME_")


def definition_text(definition: dict[str, Any]) -> str:
    """A definition object as the JSON text the service stores (an empty object stays "{}")."""
    return orjson.dumps(definition).decode()


def _parsed(text: str) -> dict[str, Any] | None:
    """The JSON object in `text`, None when it is empty, not JSON or not an object."""
    if not text:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _or_none(value: str) -> str | None:
    return value or None


def issue_read(i: pb.ValidationIssue) -> IssueRead:
    return IssueRead(code=i.code, message=i.message, step_id=_or_none(i.step_id), path=_or_none(i.path))


def validation_read(v: pb.ValidateJourneyResponse) -> ValidationRead:
    return ValidationRead(
        valid=v.valid, errors=[issue_read(i) for i in v.errors], warnings=[issue_read(i) for i in v.warnings]
    )


def journey_read(j: pb.Journey) -> JourneyRead:
    draft = _parsed(j.draft_definition_json)
    return JourneyRead(
        id=j.id,
        name=j.name,
        description=j.description,
        status=JOURNEY_STATUS.name(j.status),
        published_version=j.published_version,
        version=j.version or None,
        definition=_parsed(j.definition_json),
        draft=draft,
        draft_text=j.draft_definition_json if draft is None and j.draft_definition_json else None,
        has_unpublished_changes=j.has_unpublished_changes,
        created_at=time_field(j, "created_at"),
        updated_at=time_field(j, "updated_at"),
        published_at=time_field(j, "published_at"),
    )


def journey_summary(j: pb.Journey) -> JourneySummary:
    return JourneySummary(
        id=j.id,
        name=j.name,
        description=j.description,
        status=JOURNEY_STATUS.name(j.status),
        published_version=j.published_version,
        created_at=time_field(j, "created_at"),
        updated_at=time_field(j, "updated_at"),
        published_at=time_field(j, "published_at"),
    )


def enrollment_read(e: pb.Enrollment) -> EnrollmentRead:
    return EnrollmentRead(
        id=e.id,
        journey_id=e.journey_id,
        journey_version=e.journey_version,
        profile_id=e.profile_id,
        status=ENROLLMENT_STATUS.name(e.status),
        holdout=e.holdout,
        entry_key=e.entry_key,
        trigger=e.trigger,
        context=_parsed(e.context_json) or {},
        current_step_id=_or_none(e.current_step_id),
        waiting_until=time_field(e, "waiting_until"),
        waiting_for_event=_or_none(e.waiting_for_event),
        converted=e.converted,
        converted_at=time_field(e, "converted_at"),
        exit_reason=_or_none(e.exit_reason),
        entered_at=time_field(e, "entered_at"),
        updated_at=time_field(e, "updated_at"),
        ended_at=time_field(e, "ended_at"),
    )


def trace_step_read(t: pb.TraceStep) -> TraceStepRead:
    return TraceStepRead(step_id=t.step_id, step_type=t.step_type, outcome=t.outcome, at=time_field(t, "at"))


def enrollment_detail(r: pb.GetEnrollmentResponse) -> EnrollmentDetail:
    return EnrollmentDetail(**enrollment_read(r.enrollment).model_dump(), trace=[trace_step_read(t) for t in r.trace])


def effect_read(e: pb.TestEffect) -> EffectRead:
    return EffectRead(step_id=e.step_id, kind=e.kind, spec=_parsed(e.spec_json) or {})


def journey_test_read(r: pb.TestJourneyResponse) -> JourneyTestResult:
    return JourneyTestResult(
        status=r.status,
        exit_reason=_or_none(r.exit_reason),
        waited_seconds=r.waited_seconds,
        trace=[trace_step_read(t) for t in r.trace],
        effects=[effect_read(e) for e in r.effects],
        errors=[issue_read(i) for i in r.errors],
    )


def dry_run_read(r: pb.DryRunJourneyResponse) -> DryRunRead:
    return DryRunRead(
        estimated_entrants=r.estimated_entrants,
        estimated_holdout=r.estimated_holdout,
        total_profiles=r.total_profiles,
        basis=r.basis,
    )


def stats_read(journey_id: str, version: int | None, s: pb.GetJourneyStatsResponse) -> JourneyStats:
    return JourneyStats(
        journey_id=journey_id,
        version=version,
        entered=s.entered,
        active=s.active,
        completed=s.completed,
        exited=s.exited,
        converted=s.converted,
        conversion_rate=s.conversion_rate,
        holdout=GroupStatsRead(
            entered=s.holdout_entered, converted=s.holdout_converted, conversion_rate=s.holdout_conversion_rate
        ),
        uplift=s.uplift,
        steps=[
            StepStatsRead(
                step_id=st.step_id,
                step_type=st.step_type,
                name=st.name,
                entered=st.entered,
                completed=st.completed,
                active=st.active,
                failed=st.failed,
                outcomes=[OutcomeCountRead(outcome=o.outcome, count=o.count) for o in st.outcomes],
            )
            for st in s.steps
        ],
    )


def context_text(context: dict[str, Any]) -> str:
    return json_text(context)


def error_code(exc: grpc.aio.AioRpcError) -> str | None:
    """The service's stable error code (trailing metadata), None when absent."""
    try:
        trailers = exc.trailing_metadata() or ()
    except Exception:  # trailers are best effort
        return None
    for key, value in trailers:
        if key == ERROR_CODE_METADATA and isinstance(value, str):
            return value
    return None
