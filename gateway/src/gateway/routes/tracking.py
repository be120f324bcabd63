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


_SINGLE_CALLS = {
    "track": (TrackCall, "Record an action (Segment track)"),
    "identify": (IdentifyCall, "Tie a user to traits (Segment identify)"),
    "alias": (AliasCall, "Merge two identities (Segment alias)"),
    "page": (PageCall, "Record a page view (Segment page)"),
    "screen": (ScreenCall, "Record an app screen view (Segment screen)"),
    "group": (GroupCall, "Tie a user to a group (Segment group)"),
}


def _add_single_call_route(call_type: str, model: type, summary: str) -> None:
    async def endpoint(request: Request, resources: ResourcesDep, principal: EventsWriter) -> TrackingResponse:
        return await _single(request, resources, principal, call_type)

    endpoint.__name__ = call_type
    router.add_api_route(
        f"/{call_type}", endpoint, methods=["POST"], response_model=TrackingResponse, summary=summary,
        openapi_extra=json_body(model, example=_EXAMPLES[call_type]), responses=_ERRORS,
    )


for _call_type, (_model, _summary) in _SINGLE_CALLS.items():
    _add_single_call_route(_call_type, _model, _summary)


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
