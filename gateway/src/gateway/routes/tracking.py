"""Segment-compatible HTTP Tracking API: parse, validate (gateway.tracking), forward to identity."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gateway.auth import EventsWriter
from gateway.bodies import read_json
from gateway.errors import ProblemError
from gateway.ingest import forward
from gateway.openapi import json_body
from gateway.resources import ResourcesDep
from gateway.schemas.common import problem_responses
from gateway.schemas.tracking import (
    AliasCall,
    BatchRequest,
    GroupCall,
    IdentifyCall,
    PageCall,
    Rejected,
    ScreenCall,
    TrackCall,
    TrackingResponse,
)
from gateway.tracking import Rejection, batch_envelope, normalise_call

router = APIRouter(prefix="/v1", tags=["tracking"])
_ERRORS = problem_responses(400, 401, 403, 413, 415, 429, 503, 504)


async def _single(
    request: Request, resources: ResourcesDep, principal: EventsWriter, kind: str
) -> TrackingResponse:
    limit = resources.settings.max_call_bytes
    body = await read_json(request, limit)
    received_at = resources.clock.now()
    call = normalise_call(body, call_type=kind, received_at=received_at, max_bytes=limit)
    if isinstance(call, Rejection):
        raise ProblemError(call.code, call.detail, status=400)
    result = await forward(
        resources.identity, tenant_id=principal.tenant_id, received_at=received_at, calls=[call]
    )
    if result.rejected:
        r = result.rejected[0]
        raise ProblemError(r.code, r.detail, status=400)
    return TrackingResponse(accepted=result.accepted, duplicates=result.duplicates)


_EXAMPLES = {
    "track": {
        "userId": "42",
        "event": "Order Completed",
        "properties": {"revenue": 39.9, "currency": "CNY"},
        "timestamp": "2026-11-11T10:00:00Z",
        "sentAt": "2026-11-11T10:00:01Z",
    },
    "identify": {"userId": "42", "traits": {"email": "rachel@example.com", "name": "Rachel"}},
    "alias": {"previousId": "anon-123", "userId": "42"},
    "page": {"anonymousId": "anon-123", "name": "Home", "properties": {"url": "https://shop.example/"}},
    "screen": {"userId": "42", "name": "Cart", "context": {"library": {"name": "analytics-ios"}}},
    "group": {"userId": "42", "groupId": "store-7", "traits": {"city": "Shanghai"}},
}


@router.post(
    "/track",
    response_model=TrackingResponse,
    summary="Record an action (Segment track)",
    openapi_extra=json_body(TrackCall, example=_EXAMPLES["track"]),
    responses=_ERRORS,
)
async def track(request: Request, resources: ResourcesDep, principal: EventsWriter) -> TrackingResponse:
    return await _single(request, resources, principal, "track")


@router.post(
    "/identify",
    response_model=TrackingResponse,
    summary="Tie a user to traits (Segment identify)",
    openapi_extra=json_body(IdentifyCall, example=_EXAMPLES["identify"]),
    responses=_ERRORS,
)
async def identify(request: Request, resources: ResourcesDep, principal: EventsWriter) -> TrackingResponse:
    return await _single(request, resources, principal, "identify")


@router.post(
    "/alias",
    response_model=TrackingResponse,
    summary="Merge two identities (Segment alias)",
    openapi_extra=json_body(AliasCall, example=_EXAMPLES["alias"]),
    responses=_ERRORS,
)
async def alias(request: Request, resources: ResourcesDep, principal: EventsWriter) -> TrackingResponse:
    return await _single(request, resources, principal, "alias")


@router.post(
    "/page",
    response_model=TrackingResponse,
    summary="Record a page view (Segment page)",
    openapi_extra=json_body(PageCall, example=_EXAMPLES["page"]),
    responses=_ERRORS,
)
async def page(request: Request, resources: ResourcesDep, principal: EventsWriter) -> TrackingResponse:
    return await _single(request, resources, principal, "page")


@router.post(
    "/screen",
    response_model=TrackingResponse,
    summary="Record an app screen view (Segment screen)",
    openapi_extra=json_body(ScreenCall, example=_EXAMPLES["screen"]),
    responses=_ERRORS,
)
async def screen(request: Request, resources: ResourcesDep, principal: EventsWriter) -> TrackingResponse:
    return await _single(request, resources, principal, "screen")


@router.post(
    "/group",
    response_model=TrackingResponse,
    summary="Tie a user to a group (Segment group)",
    openapi_extra=json_body(GroupCall, example=_EXAMPLES["group"]),
    responses=_ERRORS,
)
async def group(request: Request, resources: ResourcesDep, principal: EventsWriter) -> TrackingResponse:
    return await _single(request, resources, principal, "group")


@router.post(
    "/batch",
    response_model=TrackingResponse,
    summary="Send many calls at once (Segment batch)",
    description="Up to 500 KB per request and 32 KB per call. Invalid calls are reported by index in "
    "`rejected`; the valid ones are stored. A repeated messageId is stored once.",
    openapi_extra=json_body(
        BatchRequest,
        example={
            "batch": [{"type": "identify", **_EXAMPLES["identify"]}, {"type": "track", **_EXAMPLES["track"]}]
        },
    ),
    responses=_ERRORS,
)
async def batch(request: Request, resources: ResourcesDep, principal: EventsWriter) -> TrackingResponse:
    limit = resources.settings.max_batch_bytes
    body = await read_json(request, limit)
    try:
        events, context, sent_at = batch_envelope(body)
    except ValueError as exc:
        raise ProblemError("invalid_request", str(exc)) from None
    received_at = resources.clock.now()
    max_call = resources.settings.max_call_bytes
    calls = [
        normalise_call(
            e,
            call_type=None,
            received_at=received_at,
            max_bytes=max_call,
            batch_context=context,
            batch_sent_at=sent_at,
        )
        for e in events
    ]
    result = await forward(
        resources.identity, tenant_id=principal.tenant_id, received_at=received_at, calls=calls
    )
    return TrackingResponse(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=[Rejected(index=r.index, code=r.code, detail=r.detail) for r in result.rejected],
    )


# Segment serves the same endpoint under /v1/import
router.add_api_route(
    "/import", batch, methods=["POST"], response_model=TrackingResponse, include_in_schema=False
)
