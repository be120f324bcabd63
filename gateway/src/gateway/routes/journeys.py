"""Journeys API: definitions (drafts saved even when invalid, validation, publish into immutable versions,
pause / resume / archive), test runs and dry runs, enrollments (API entry, by journey, by profile) and
stats. Reads (and validation, test runs and dry runs, which change nothing) need `journeys:read`, changes
`journeys:write` (or `admin`). Saving, publishing and enrolling honour `Idempotency-Key`; pause, resume and
archive are idempotent by nature (asking again for the state the journey is in changes nothing)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import grpc
from fastapi import APIRouter, Body, Path, Query, Response, status
from pydantic import AwareDatetime

from gateway.auth import JourneysReader, JourneysWriter, Principal
from gateway.errors import ProblemError
from gateway.journeys import (
    ENROLL_OUTCOME,
    ENROLLMENT_STATUS,
    JOURNEY_STATUS,
    context_text,
    definition_text,
    dry_run_read,
    enrollment_detail,
    enrollment_read,
    error_code,
    issue_read,
    journey_read,
    journey_summary,
    journey_test_read,
    stats_read,
    validation_read,
)
from gateway.profiles import resolve_profile_id
from gateway.resources import IdentityDep, JourneyDep
from gateway.routes.profile_admin import IdempotencyKey
from gateway.schemas.common import problem_responses
from gateway.schemas.journeys import (
    DefinitionDryRunRequest,
    DefinitionTestRequest,
    DraftDryRunRequest,
    DraftTestRequest,
    DryRunRead,
    EnrollmentDetail,
    EnrollmentPage,
    EnrollRequest,
    EnrollResult,
    JourneyPage,
    JourneyRead,
    JourneySaved,
    JourneyStats,
    JourneyTestResult,
    JourneyWrite,
    PublishResult,
    ValidateRequest,
    ValidationRead,
)
from gateway.schemas.loyalty import INT32_MAX, Cursor
from mcloud.journey.v1 import journey_pb2 as pb
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.timestamps import set_timestamp

router = APIRouter(tags=["journeys"])
READ_ERRORS = problem_responses(400, 401, 403, 404, 429, 503, 504)
WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 429, 503, 504)
JourneyId = Annotated[uuid.UUID, Path(description="journey id (UUID)")]
EnrollmentId = Annotated[uuid.UUID, Path(description="enrollment id (UUID)")]
ProfilePath = Annotated[
    str,
    Path(
        description="identity profile id (UUID), or type:value as the storefront knows the person "
        "(user_id:42, email:rachel@example.com, phone:+8613800000000)",
        examples=["user_id:42"],
        max_length=512,
    ),
]
Limit = Annotated[int, Query(ge=1, le=500, description="items per page")]
CursorQuery = Annotated[Cursor | None, Query(description="next_cursor of the previous page")]
VersionQuery = Annotated[int | None, Query(ge=1, le=INT32_MAX, description="a published version; default: the latest")]
JourneyStatusName = Literal["draft", "active", "paused", "archived"]
EnrollmentStatusName = Literal["active", "completed", "exited"]


def _md(principal: Principal) -> tuple[tuple[str, str], ...]:
    return tenant_metadata(principal.tenant_id)


def _key(idempotency_key: str | None) -> str:
    return idempotency_key or ""


# ---- journeys -------------------------------------------------------------------------------------


@router.post(
    "/v1/journeys",
    response_model=JourneySaved,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE_ERRORS,
    summary="Create a journey (its draft is saved even when invalid, with the errors)",
    description="The definition is a JSON object (grammar: journey-svc/docs/definition.md). The journey starts as a "
    "`draft`; `errors` lists what must be fixed before it can be published. With `Idempotency-Key`, a retry "
    "returns the journey the first call created.",
)
async def create_journey(
    body: JourneyWrite,
    response: Response,
    principal: JourneysWriter,
    journey: JourneyDep,
    idempotency_key: IdempotencyKey = None,
) -> JourneySaved:
    result = await journey.SaveJourneyDraft(
        pb.SaveJourneyDraftRequest(
            name=body.name,
            description=body.description,
            definition_json=definition_text(body.definition),
            idempotency_key=_key(idempotency_key),
        ),
        metadata=_md(principal),
    )
    response.headers["Location"] = f"/v1/journeys/{result.journey.id}"
    return JourneySaved(journey=journey_read(result.journey), errors=[issue_read(i) for i in result.errors])


@router.put(
    "/v1/journeys/{journey_id}",
    response_model=JourneySaved,
    responses=WRITE_ERRORS,
    summary="Replace a journey's name, description and draft",
    description="Published versions never change: running enrollments keep theirs, the draft goes live on the next "
    "publish. 409 `journey_archived` for an archived journey.",
)
async def replace_journey(
    journey_id: JourneyId,
    body: JourneyWrite,
    principal: JourneysWriter,
    journey: JourneyDep,
    idempotency_key: IdempotencyKey = None,
) -> JourneySaved:
    result = await journey.SaveJourneyDraft(
        pb.SaveJourneyDraftRequest(
            journey_id=str(journey_id),
            name=body.name,
            description=body.description,
            definition_json=definition_text(body.definition),
            idempotency_key=_key(idempotency_key),
        ),
        metadata=_md(principal),
    )
    return JourneySaved(journey=journey_read(result.journey), errors=[issue_read(i) for i in result.errors])


@router.get(
    "/v1/journeys",
    response_model=JourneyPage,
    responses=READ_ERRORS,
    summary="List journeys, most recently updated first",
)
async def list_journeys(
    principal: JourneysReader,
    journey: JourneyDep,
    status_: Annotated[
        list[JourneyStatusName] | None, Query(alias="status", description="only these statuses (repeat for several)")
    ] = None,
    limit: Limit = 50,
    cursor: CursorQuery = None,
) -> JourneyPage:
    result = await journey.ListJourneys(
        pb.ListJourneysRequest(
            statuses=[JOURNEY_STATUS.value(s) for s in status_ or ()], page_size=limit, page_token=cursor or ""
        ),
        metadata=_md(principal),
    )
    return JourneyPage(
        journeys=[journey_summary(j) for j in result.journeys], next_cursor=result.next_page_token or None
    )


@router.get(
    "/v1/journeys/{journey_id}",
    response_model=JourneyRead,
    responses=READ_ERRORS,
    summary="Read a journey: its draft and a published definition",
    description="`definition` is the latest published version, or `version`; `draft` is the editable draft (as "
    "`draft_text` when it is not a JSON object).",
)
async def get_journey(
    journey_id: JourneyId, principal: JourneysReader, journey: JourneyDep, version: VersionQuery = None
) -> JourneyRead:
    result = await journey.GetJourney(
        pb.GetJourneyRequest(journey_id=str(journey_id), version=version or 0), metadata=_md(principal)
    )
    return journey_read(result.journey)


# ---- validation and life cycle --------------------------------------------------------------------


@router.post(
    "/v1/journeys/validate",
    response_model=ValidationRead,
    responses=problem_responses(401, 403, 422, 429, 503, 504),
    summary="Check a definition without saving it",
    description="Every error and warning with its code, step and JSON pointer; warnings never block publishing.",
)
async def validate_definition(body: ValidateRequest, principal: JourneysReader, journey: JourneyDep) -> ValidationRead:
    result = await journey.ValidateJourney(
        pb.ValidateJourneyRequest(definition_json=definition_text(body.definition)), metadata=_md(principal)
    )
    return validation_read(result)


@router.post(
    "/v1/journeys/{journey_id}/validate",
    response_model=ValidationRead,
    responses=READ_ERRORS,
    summary="Check a journey's saved draft",
)
async def validate_draft(journey_id: JourneyId, principal: JourneysReader, journey: JourneyDep) -> ValidationRead:
    result = await journey.ValidateJourney(
        pb.ValidateJourneyRequest(journey_id=str(journey_id)), metadata=_md(principal)
    )
    return validation_read(result)


@router.post(
    "/v1/journeys/{journey_id}/publish",
    response_model=PublishResult,
    responses=WRITE_ERRORS,
    summary="Publish the draft as the next immutable version (the journey becomes active)",
    description="409 `invalid_definition` (with `definition_errors`) when the draft has errors. Publishing an "
    "unchanged draft returns the current version; running enrollments keep the version they entered. With "
    "`Idempotency-Key`, a retry returns the first result.",
)
async def publish_journey(
    journey_id: JourneyId,
    principal: JourneysWriter,
    journey: JourneyDep,
    idempotency_key: IdempotencyKey = None,
) -> PublishResult:
    try:
        result = await journey.PublishJourney(
            pb.PublishJourneyRequest(journey_id=str(journey_id), idempotency_key=_key(idempotency_key)),
            metadata=_md(principal),
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION or error_code(exc) != "invalid_definition":
            raise
        check = await journey.ValidateJourney(
            pb.ValidateJourneyRequest(journey_id=str(journey_id)), metadata=_md(principal)
        )
        raise ProblemError(
            "invalid_definition",
            exc.details() or "The draft has errors.",
            status=status.HTTP_409_CONFLICT,
            title="The draft is not a valid journey definition",
            definition_errors=[issue_read(i).model_dump() for i in check.errors],
        ) from None
    return PublishResult(version=result.version, journey=journey_read(result.journey))


_TRANSITION_DESCRIPTION = (
    "Asking for the state the journey is already in changes nothing (safe to retry); 409 `invalid_transition` "
    "otherwise."
)


@router.post(
    "/v1/journeys/{journey_id}/pause",
    response_model=JourneyRead,
    responses=WRITE_ERRORS,
    summary="Pause an active journey: no new entries, enrollments hold before their next step",
    description=_TRANSITION_DESCRIPTION,
)
async def pause_journey(journey_id: JourneyId, principal: JourneysWriter, journey: JourneyDep) -> JourneyRead:
    result = await journey.PauseJourney(pb.PauseJourneyRequest(journey_id=str(journey_id)), metadata=_md(principal))
    return journey_read(result.journey)


@router.post(
    "/v1/journeys/{journey_id}/resume",
    response_model=JourneyRead,
    responses=WRITE_ERRORS,
    summary="Resume a paused journey: held enrollments continue",
    description=_TRANSITION_DESCRIPTION,
)
async def resume_journey(journey_id: JourneyId, principal: JourneysWriter, journey: JourneyDep) -> JourneyRead:
    result = await journey.ResumeJourney(
        pb.ResumeJourneyRequest(journey_id=str(journey_id)), metadata=_md(principal)
    )
    return journey_read(result.journey)


@router.post(
    "/v1/journeys/{journey_id}/archive",
    response_model=JourneyRead,
    responses=WRITE_ERRORS,
    summary="Archive a journey for good: running enrollments exit with reason archived",
    description=_TRANSITION_DESCRIPTION,
)
async def archive_journey(journey_id: JourneyId, principal: JourneysWriter, journey: JourneyDep) -> JourneyRead:
    result = await journey.ArchiveJourney(
        pb.ArchiveJourneyRequest(journey_id=str(journey_id)), metadata=_md(principal)
    )
    return journey_read(result.journey)


# ---- test runs and dry runs -----------------------------------------------------------------------

_TEST_DESCRIPTION = (
    "Runs the definition for one test profile (`profile_id` is a profile id or type:value) from its start, "
    "with every wait fast-forwarded: a wait_for_event step sees its event when `events` names it (each name "
    "is used once), otherwise it times out. Conditions read the profile's real traits, segments and loyalty "
    "status. Side effects (sends, webhooks, points...) are listed in `effects`, never performed; nothing is "
    "enrolled or saved. A definition with errors does not run: `status` is `invalid` and `errors` lists them."
)


async def _test(
    identity: IdentityDep, journey: JourneyDep, principal: Principal, body: DraftTestRequest | DefinitionTestRequest,
    **source: str,
) -> JourneyTestResult:
    profile_id = await resolve_profile_id(identity, body.profile_id, _md(principal))
    result = await journey.TestJourney(
        pb.TestJourneyRequest(
            profile_id=profile_id, context_json=context_text(body.context), events=body.events, **source
        ),
        metadata=_md(principal),
    )
    return journey_test_read(result)


@router.post(
    "/v1/journeys/test",
    response_model=JourneyTestResult,
    responses=problem_responses(400, 401, 403, 404, 422, 429, 503, 504),
    summary="Test-run an inline definition for one test profile (waits fast-forwarded, effects listed)",
    description=_TEST_DESCRIPTION,
)
async def try_definition(
    body: DefinitionTestRequest, identity: IdentityDep, principal: JourneysReader, journey: JourneyDep
) -> JourneyTestResult:
    return await _test(identity, journey, principal, body, definition_json=definition_text(body.definition))


@router.post(
    "/v1/journeys/{journey_id}/test",
    response_model=JourneyTestResult,
    responses=problem_responses(400, 401, 403, 404, 422, 429, 503, 504),
    summary="Test-run a journey's saved draft for one test profile (waits fast-forwarded, effects listed)",
    description=_TEST_DESCRIPTION,
)
async def try_draft(
    journey_id: JourneyId, body: DraftTestRequest, identity: IdentityDep, principal: JourneysReader, journey: JourneyDep
) -> JourneyTestResult:
    return await _test(identity, journey, principal, body, journey_id=str(journey_id))


_DRY_RUN_DESCRIPTION = (
    "How many people would have entered, changing nothing: event entries count the people with that event "
    "(and `where`) in the last `days` days (default 30), segment entries the segment's members now; "
    "`estimated_holdout` is the holdout_percent share of them. api and tier_change entries cannot be estimated: "
    "the counts are 0 and `basis` says why. A definition with errors is a problem `invalid_definition` with "
    "`definition_errors`."
)


async def _dry_run(
    journey: JourneyDep, principal: Principal, days: int, invalid_status: int, **source: str
) -> DryRunRead:
    try:
        result = await journey.DryRunJourney(pb.DryRunJourneyRequest(days=days, **source), metadata=_md(principal))
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.INVALID_ARGUMENT or error_code(exc) != "invalid_definition":
            raise
        check = await journey.ValidateJourney(pb.ValidateJourneyRequest(**source), metadata=_md(principal))
        raise ProblemError(
            "invalid_definition",
            "The definition has errors; fix them before estimating.",
            status=invalid_status,
            title="Not a valid journey definition",
            definition_errors=[issue_read(i).model_dump() for i in check.errors],
        ) from None
    return dry_run_read(result)


@router.post(
    "/v1/journeys/dry-run",
    response_model=DryRunRead,
    responses=problem_responses(400, 401, 403, 422, 429, 503, 504),
    summary="Estimate how many people an inline definition would have let in",
    description=_DRY_RUN_DESCRIPTION + " (422 for an inline definition.)",
)
async def dry_run_definition(
    body: DefinitionDryRunRequest, principal: JourneysReader, journey: JourneyDep
) -> DryRunRead:
    return await _dry_run(journey, principal, body.days, 422, definition_json=definition_text(body.definition))


@router.post(
    "/v1/journeys/{journey_id}/dry-run",
    response_model=DryRunRead,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 429, 503, 504),
    summary="Estimate how many people a journey's saved draft would have let in",
    description=_DRY_RUN_DESCRIPTION + " (409 for a saved draft, as publishing it would be.) The body is optional.",
)
async def dry_run_draft(
    journey_id: JourneyId,
    principal: JourneysReader,
    journey: JourneyDep,
    body: Annotated[DraftDryRunRequest | None, Body()] = None,
) -> DryRunRead:
    days = (body or DraftDryRunRequest()).days
    return await _dry_run(journey, principal, days, status.HTTP_409_CONFLICT, journey_id=str(journey_id))


# ---- enrollments ----------------------------------------------------------------------------------


@router.post(
    "/v1/journeys/{journey_id}/enrollments",
    response_model=EnrollResult,
    status_code=status.HTTP_201_CREATED,
    responses={
        **WRITE_ERRORS,
        200: {"model": EnrollResult, "description": "Not enrolled now: duplicate, reentry_blocked or excluded"},
    },
    summary="Enrol a profile in an active journey (201 when enrolled now, 200 otherwise)",
    description="`profile_id` is a profile id or type:value. One enrollment per (journey, profile, entry_key) and "
    "per `Idempotency-Key`: a repeat answers `duplicate` with the existing enrollment; the journey's re-entry rule "
    "may answer `reentry_blocked` (with the blocking enrollment). 409 `journey_not_active` unless the journey is "
    "active.",
)
async def enroll_profile(
    journey_id: JourneyId,
    body: EnrollRequest,
    response: Response,
    identity: IdentityDep,
    principal: JourneysWriter,
    journey: JourneyDep,
    idempotency_key: IdempotencyKey = None,
) -> EnrollResult:
    profile_id = await resolve_profile_id(identity, body.profile_id, _md(principal))
    result = await journey.EnrollProfile(
        pb.EnrollProfileRequest(
            journey_id=str(journey_id),
            profile_id=profile_id,
            entry_key=body.entry_key,
            context_json=context_text(body.context),
            idempotency_key=_key(idempotency_key),
        ),
        metadata=_md(principal),
    )
    enrolled = result.outcome == pb.ENROLL_OUTCOME_ENROLLED
    response.status_code = status.HTTP_201_CREATED if enrolled else status.HTTP_200_OK
    enrollment = enrollment_read(result.enrollment) if result.HasField("enrollment") else None
    if enrollment is not None:
        response.headers["Location"] = f"/v1/enrollments/{enrollment.id}"
    return EnrollResult(outcome=ENROLL_OUTCOME.name(result.outcome), enrollment=enrollment)


StatusFilter = Annotated[
    list[EnrollmentStatusName] | None, Query(alias="status", description="only these statuses (repeat for several)")
]


async def _enrollments(
    journey: JourneyDep, principal: Principal, *, journey_id: str = "", profile_id: str = "",
    statuses: list[str] | None, limit: int, cursor: str | None,
) -> EnrollmentPage:
    result = await journey.ListEnrollments(
        pb.ListEnrollmentsRequest(
            journey_id=journey_id,
            profile_id=profile_id,
            statuses=[ENROLLMENT_STATUS.value(s) for s in statuses or ()],
            page_size=limit,
            page_token=cursor or "",
        ),
        metadata=_md(principal),
    )
    return EnrollmentPage(
        enrollments=[enrollment_read(e) for e in result.enrollments], next_cursor=result.next_page_token or None
    )


@router.get(
    "/v1/journeys/{journey_id}/enrollments",
    response_model=EnrollmentPage,
    responses=READ_ERRORS,
    summary="A journey's enrollments, newest first, page by page",
)
async def journey_enrollments(
    journey_id: JourneyId,
    principal: JourneysReader,
    journey: JourneyDep,
    status_: StatusFilter = None,
    limit: Limit = 50,
    cursor: CursorQuery = None,
) -> EnrollmentPage:
    # an unknown journey is a 404, not an empty page
    await journey.GetJourney(pb.GetJourneyRequest(journey_id=str(journey_id)), metadata=_md(principal))
    return await _enrollments(
        journey, principal, journey_id=str(journey_id), statuses=status_, limit=limit, cursor=cursor
    )


@router.get(
    "/v1/profiles/{profile_id}/enrollments",
    response_model=EnrollmentPage,
    responses=READ_ERRORS,
    summary="A person's journey enrollments, newest first, page by page",
)
async def profile_enrollments(
    profile_id: ProfilePath,
    identity: IdentityDep,
    principal: JourneysReader,
    journey: JourneyDep,
    status_: StatusFilter = None,
    limit: Limit = 50,
    cursor: CursorQuery = None,
) -> EnrollmentPage:
    resolved = await resolve_profile_id(identity, profile_id, _md(principal))
    return await _enrollments(journey, principal, profile_id=resolved, statuses=status_, limit=limit, cursor=cursor)


@router.get(
    "/v1/enrollments/{enrollment_id}",
    response_model=EnrollmentDetail,
    responses=READ_ERRORS,
    summary="One enrollment, where it is and the steps it has passed (its trace)",
)
async def get_enrollment(
    enrollment_id: EnrollmentId, principal: JourneysReader, journey: JourneyDep
) -> EnrollmentDetail:
    result = await journey.GetEnrollment(
        pb.GetEnrollmentRequest(enrollment_id=str(enrollment_id)), metadata=_md(principal)
    )
    return enrollment_detail(result)


# ---- stats ----------------------------------------------------------------------------------------


@router.get(
    "/v1/journeys/{journey_id}/stats",
    response_model=JourneyStats,
    responses=READ_ERRORS,
    summary="Entries, exits, conversion of the treated group against the holdout, uplift and per-step counts",
    description="Of one published `version` (default: all) and of enrollments that entered in "
    "[entered_from, entered_to).",
)
async def journey_stats(
    journey_id: JourneyId,
    principal: JourneysReader,
    journey: JourneyDep,
    version: Annotated[int | None, Query(ge=1, le=INT32_MAX, description="a published version; default: all")] = None,
    entered_from: Annotated[AwareDatetime | None, Query(description="entered at or after (RFC 3339)")] = None,
    entered_to: Annotated[AwareDatetime | None, Query(description="entered before (RFC 3339)")] = None,
) -> JourneyStats:
    if entered_from is not None and entered_to is not None and entered_to <= entered_from:
        raise ProblemError("invalid_request", "entered_to must be after entered_from.")
    request = pb.GetJourneyStatsRequest(journey_id=str(journey_id), version=version or 0)
    if entered_from is not None:
        set_timestamp(request.entered_from, entered_from)
    if entered_to is not None:
        set_timestamp(request.entered_to, entered_to)
    result = await journey.GetJourneyStats(request, metadata=_md(principal))
    return stats_read(str(journey_id), version, result)
