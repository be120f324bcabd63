"""Segment API: rule-based audiences kept current by identity as events arrive. Reads need
`segments:read`, changes `segments:write` (or `admin`). Segment ids are UUIDs."""

from __future__ import annotations

import uuid
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Path, Query, Response, status

from gateway.auth import SegmentsReader, SegmentsWriter
from gateway.errors import ProblemError
from gateway.profiles import time_field
from gateway.resources import IdentityDep
from gateway.schemas.common import problem_responses
from gateway.schemas.segments import (
    SegmentEstimate,
    SegmentEstimateRequest,
    SegmentList,
    SegmentMembersPage,
    SegmentRead,
    SegmentWrite,
)
from mcloud.identity.v1 import identity_pb2
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.ids import new_id

router = APIRouter(prefix="/v1/segments", tags=["segments"])
_READ_ERRORS = problem_responses(400, 401, 403, 404, 429, 503, 504)
_WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 429, 503, 504)
SegmentId = Annotated[uuid.UUID, Path(description="segment id (UUID)")]
# POST with the same Idempotency-Key from the same tenant names the same segment, so a retry
# updates it instead of creating a second one.
_IDEMPOTENT_IDS = uuid.UUID("6f1f8f5e-2a53-4d7e-9c1e-5b0c7f3d9a10")


def segment_read(s: identity_pb2.Segment) -> SegmentRead:
    rules = orjson.loads(s.rules_json) if s.rules_json else {}
    return SegmentRead(
        id=s.id,
        name=s.name,
        description=s.description,
        rules=rules if isinstance(rules, dict) else {},
        member_count=s.member_count,
        created_at=time_field(s, "created_at"),
        updated_at=time_field(s, "updated_at"),
    )


async def _upsert(identity, tenant_id: str, segment_id: str, body: SegmentWrite) -> SegmentRead:
    response = await identity.UpsertSegment(
        identity_pb2.UpsertSegmentRequest(
            segment=identity_pb2.Segment(
                id=segment_id,
                name=body.name,
                description=body.description,
                rules_json=orjson.dumps(body.rules).decode(),
            )
        ),
        metadata=tenant_metadata(tenant_id),
    )
    return segment_read(response.segment)


@router.get("", response_model=SegmentList, responses=_READ_ERRORS, summary="List the tenant's segments")
async def list_segments(principal: SegmentsReader, identity: IdentityDep) -> SegmentList:
    response = await identity.ListSegments(
        identity_pb2.ListSegmentsRequest(), metadata=tenant_metadata(principal.tenant_id)
    )
    return SegmentList(segments=[segment_read(s) for s in response.segments])


@router.post(
    "",
    response_model=SegmentRead,
    status_code=status.HTTP_201_CREATED,
    responses=_WRITE_ERRORS,
    summary="Create a segment",
    description="Members are evaluated in the background; `member_count` fills in as they are. "
    "With `Idempotency-Key`, a retry updates the segment the first call created.",
)
async def create_segment(
    body: SegmentWrite,
    response: Response,
    principal: SegmentsWriter,
    identity: IdentityDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> SegmentRead:
    segment_id = (
        uuid.uuid5(_IDEMPOTENT_IDS, f"{principal.tenant_id}:{idempotency_key}") if idempotency_key else new_id()
    )
    segment = await _upsert(identity, principal.tenant_id, str(segment_id), body)
    response.headers["Location"] = f"/v1/segments/{segment.id}"
    return segment


@router.post(
    "/estimate",
    response_model=SegmentEstimate,
    responses=_WRITE_ERRORS,
    summary="Count the profiles a draft rule tree matches now, without saving it",
)
async def estimate_segment(
    body: SegmentEstimateRequest, principal: SegmentsReader, identity: IdentityDep
) -> SegmentEstimate:
    response = await identity.EstimateSegment(
        identity_pb2.EstimateSegmentRequest(rules_json=orjson.dumps(body.rules).decode()),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return SegmentEstimate(count=response.count, total=response.total)


@router.get("/{segment_id}", response_model=SegmentRead, responses=_READ_ERRORS, summary="Read a segment")
async def get_segment(segment_id: SegmentId, principal: SegmentsReader, identity: IdentityDep) -> SegmentRead:
    response = await identity.GetSegment(
        identity_pb2.GetSegmentRequest(segment_id=str(segment_id)), metadata=tenant_metadata(principal.tenant_id)
    )
    return segment_read(response.segment)


@router.put(
    "/{segment_id}",
    response_model=SegmentRead,
    responses=_WRITE_ERRORS,
    summary="Create or replace a segment under a chosen id",
)
async def put_segment(
    segment_id: SegmentId, body: SegmentWrite, principal: SegmentsWriter, identity: IdentityDep
) -> SegmentRead:
    return await _upsert(identity, principal.tenant_id, str(segment_id), body)


@router.delete(
    "/{segment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_READ_ERRORS,
    summary="Delete a segment (its members get no segment.exited events)",
)
async def delete_segment(segment_id: SegmentId, principal: SegmentsWriter, identity: IdentityDep) -> Response:
    response = await identity.DeleteSegment(
        identity_pb2.DeleteSegmentRequest(segment_id=str(segment_id)), metadata=tenant_metadata(principal.tenant_id)
    )
    if not response.deleted:
        raise ProblemError("segment_not_found", f"No segment {segment_id}.", status=404, title="Not found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{segment_id}/members",
    response_model=SegmentMembersPage,
    responses=_READ_ERRORS,
    summary="Export a segment's current members, page by page",
)
async def list_members(
    segment_id: SegmentId,
    principal: SegmentsReader,
    identity: IdentityDep,
    page_size: Annotated[int, Query(ge=1, le=1000, description="profile ids per page")] = 500,
    page_token: Annotated[
        str | None, Query(max_length=1024, description="next_page_token of the previous page")
    ] = None,
) -> SegmentMembersPage:
    response = await identity.ListSegmentMembers(
        identity_pb2.ListSegmentMembersRequest(
            segment_id=str(segment_id), page_size=page_size, page_token=page_token or ""
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return SegmentMembersPage(
        segment_id=str(segment_id),
        profile_ids=list(response.profile_ids),
        next_page_token=response.next_page_token or None,
    )
