"""Privacy (export and erase a person) and the tenant's tracking plan. Path identifiers are profile ids
or type:value; the tenant comes from the key. Erasure and the plan need `admin`."""

from __future__ import annotations

from typing import Annotated

import grpc
import orjson
from fastapi import APIRouter, Header, Response, status

from gateway.auth import Admin, ProfilesReader
from gateway.profiles import resolve_profile_id, time_field
from gateway.resources import IdentityDep
from gateway.routes.profiles import IdentifierPath
from gateway.schemas.common import problem_responses
from gateway.schemas.privacy import ErasureRead, TrackingPlan, TrackingPlanRead, TrackingPlanViolationRead
from mcloud.identity.v1 import identity_pb2
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.grpc_server import ERROR_CODE_METADATA

router = APIRouter(tags=["privacy"])
_READ_ERRORS = problem_responses(400, 401, 403, 404, 429, 503, 504)
_WRITE_ERRORS = problem_responses(400, 401, 403, 404, 422, 429, 503, 504)
# Export and erase touch every event of a person: more time than the default deadline.
PRIVACY_TIMEOUT_SECONDS = 120.0
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=200,
           description="a retry with the same key returns the first result and changes nothing again"),
]


def _code(exc: grpc.aio.AioRpcError) -> str | None:
    return dict(exc.trailing_metadata() or ()).get(ERROR_CODE_METADATA)


@router.get(
    "/v1/profiles/{identifier}/export",
    responses=_READ_ERRORS,
    summary="Everything held about a person, as one JSON document (GDPR/PIPL access request)",
    description="The profile and every profile merged into it: identifiers, traits with their provenance, tags, "
    "computed traits, lifecycle, consents and their log, segment memberships, merges and events (newest first; "
    "at most 100,000 events or 12 MiB of them, `events_truncated` and `note` say when more exist).",
)
async def export_profile(identifier: IdentifierPath, principal: ProfilesReader, identity: IdentityDep) -> Response:
    metadata = tenant_metadata(principal.tenant_id)
    profile_id = await resolve_profile_id(identity, identifier, metadata)
    response = await identity.ExportProfile(identity_pb2.ExportProfileRequest(profile_id=profile_id),
                                            metadata=metadata, timeout=PRIVACY_TIMEOUT_SECONDS)
    return Response(response.export_json, media_type="application/json")


@router.delete(
    "/v1/profiles/{identifier}",
    response_model=ErasureRead,
    responses=_READ_ERRORS,
    summary="Erase a person (GDPR/PIPL): every profile merged together, their events and identifiers",
    description="Deletes events, identifiers, consents, segment memberships; blanks traits, tags and computed "
    "traits; publishes profile.erased so every service deletes its data. Events carrying an erased identifier "
    "are refused afterwards (`erased_identifier`); lookups answer 404 `profile_erased`. Idempotent: erasing again "
    "(by id, by an identifier the person had, or with the same Idempotency-Key) answers `erased: true`.",
)
async def erase_profile(
    identifier: IdentifierPath, principal: Admin, identity: IdentityDep, idempotency_key: IdempotencyKey = None
) -> ErasureRead:
    metadata = tenant_metadata(principal.tenant_id)
    try:
        profile_id = await resolve_profile_id(identity, identifier, metadata)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND and _code(exc) == "profile_erased":
            return ErasureRead(erased=True)  # the identifier's person was erased before
        raise
    response = await identity.EraseProfile(
        identity_pb2.EraseProfileRequest(profile_id=profile_id, idempotency_key=idempotency_key or ""),
        metadata=metadata, timeout=PRIVACY_TIMEOUT_SECONDS,
    )
    return ErasureRead(erased=response.erased, profile_id=profile_id)


def _plan(text: str) -> TrackingPlan | None:
    return TrackingPlan.model_validate_json(text) if text else None


@router.get(
    "/v1/tracking-plan",
    response_model=TrackingPlanRead,
    responses=problem_responses(401, 403, 429, 503, 504),
    tags=["settings"],
    summary="The tenant's tracking plan and the violations counted so far",
)
async def get_tracking_plan(principal: Admin, identity: IdentityDep) -> TrackingPlanRead:
    response = await identity.GetTrackingPlan(identity_pb2.GetTrackingPlanRequest(),
                                              metadata=tenant_metadata(principal.tenant_id))
    return TrackingPlanRead(plan=_plan(response.plan_json), violations=[
        TrackingPlanViolationRead(event=v.event, outcome=v.outcome, count=v.count, last_error=v.last_error,
                                  last_seen_at=time_field(v, "last_seen_at"))
        for v in response.violations
    ])


@router.put(
    "/v1/tracking-plan",
    response_model=TrackingPlan,
    responses=_WRITE_ERRORS,
    tags=["settings"],
    summary="Replace the tenant's tracking plan",
    description="Each schema is checked (Draft 2020-12; only local `$ref`s); a bad one is refused with 400 "
    "`invalid_tracking_plan` naming it. Takes effect for new events within seconds.",
)
async def put_tracking_plan(body: TrackingPlan, principal: Admin, identity: IdentityDep) -> TrackingPlan:
    response = await identity.SetTrackingPlan(
        identity_pb2.SetTrackingPlanRequest(plan_json=orjson.dumps(body.model_dump()).decode()),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return TrackingPlan.model_validate_json(response.plan_json)


@router.delete(
    "/v1/tracking-plan",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 429, 503, 504),
    tags=["settings"],
    summary="Remove the tenant's tracking plan (violation counts are kept)",
)
async def delete_tracking_plan(principal: Admin, identity: IdentityDep) -> Response:
    await identity.SetTrackingPlan(identity_pb2.SetTrackingPlanRequest(plan_json=""),
                                   metadata=tenant_metadata(principal.tenant_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
