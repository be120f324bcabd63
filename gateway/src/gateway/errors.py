"""RFC 9457 problem+json for every error, and the one place gRPC status becomes HTTP status.

Every problem has a stable snake_case `code`; `type` is `/problems/<code>`, which the gateway serves
as a short description (see routes/meta.py).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc
import orjson
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from gateway.tracing import route_template
from mcloud_common.errors import dependency_down
from mcloud_common.grpc_server import ERROR_CODE_METADATA
from mcloud_common.logs import get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "/problems/"

# code -> (status, title). Titles are fixed per code; `detail` says what happened this time.
CATALOGUE: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "The request is invalid"),
    "invalid_json": (400, "The body is not valid JSON"),
    "invalid_event": (400, "The event is invalid"),
    "missing_event": (400, "A track call needs an event name"),
    "missing_identity": (400, "A call needs a userId or an anonymousId"),
    "missing_previous_id": (400, "An alias call needs previousId and userId"),
    "missing_group_id": (400, "A group call needs a groupId"),
    "invalid_type": (400, "Unknown call type"),
    "invalid_field": (400, "A field has the wrong type"),
    "invalid_timestamp": (400, "A timestamp is not ISO-8601"),
    "event_too_large": (400, "One call is larger than 32 KB"),
    "invalid_identifier": (400, "The profile identifier is neither a UUID nor type:value"),
    "unsupported_encoding": (415, "Unsupported Content-Encoding"),
    "invalid_window": (400, "The time window is invalid"),
    "window_too_long": (400, "The time window is too long"),
    "validation_failed": (422, "The request failed validation"),
    "missing_api_key": (401, "An API key is required"),
    "invalid_api_key": (401, "The API key is invalid or revoked"),
    "secret_key_required": (403, "This endpoint needs a secret key"),
    "insufficient_scope": (403, "The API key lacks a required scope"),
    "not_found": (404, "Not found"),
    "method_not_allowed": (405, "Method not allowed"),
    "conflict": (409, "Conflict"),
    "payload_too_large": (413, "The request body is too large"),
    "rate_limited": (429, "Too many requests"),
    "internal": (500, "Internal error"),
    "not_implemented": (501, "Not implemented"),
    "service_unavailable": (503, "A service is unavailable"),
    "not_ready": (503, "The gateway is not ready"),
    "upstream_timeout": (504, "A service did not answer in time"),
}


class ProblemError(Exception):
    """Raise anywhere in the gateway to answer with a problem+json."""

    def __init__(
        self,
        code: str,
        detail: str | None = None,
        *,
        status: int | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        default_status, default_title = CATALOGUE.get(
            code, (status or 400, code.replace("_", " ").capitalize())
        )
        self.code = code
        self.status = status or default_status
        self.title = title or default_title
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions
        super().__init__(detail or self.title)


def problem_response(
    status: int,
    code: str,
    *,
    title: str | None = None,
    detail: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title or CATALOGUE.get(code, (status, code))[1],
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=PROBLEM_JSON)


def from_problem(exc: ProblemError, instance: str | None) -> Response:
    return problem_response(
        exc.status,
        exc.code,
        title=exc.title,
        detail=exc.detail,
        instance=instance,
        headers=exc.headers,
        **exc.extensions,
    )


# ---- gRPC status -> HTTP --------------------------------------------------------------------------

# status -> (HTTP status, default code, whether the service's detail text is safe to show)
_GRPC_TO_HTTP: dict[grpc.StatusCode, tuple[int, str, bool]] = {
    grpc.StatusCode.NOT_FOUND: (404, "not_found", True),
    grpc.StatusCode.ALREADY_EXISTS: (409, "already_exists", True),
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_argument", True),
    grpc.StatusCode.OUT_OF_RANGE: (400, "out_of_range", True),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "failed_precondition", True),
    grpc.StatusCode.ABORTED: (409, "conflict", True),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_denied", True),
    grpc.StatusCode.UNAUTHENTICATED: (401, "unauthenticated", True),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "resource_exhausted", True),
    grpc.StatusCode.UNIMPLEMENTED: (501, "not_implemented", False),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable", False),
    grpc.StatusCode.CANCELLED: (503, "service_unavailable", False),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "upstream_timeout", False),
}
_SAFE_FALLBACK_DETAIL = {
    501: "The service does not implement this operation yet.",
    503: "A backing service is unavailable; retry shortly.",
    504: "A backing service did not answer in time; retry shortly.",
}
RETRY_AFTER_UNAVAILABLE = "1"


def _error_code_from_trailers(exc: grpc.aio.AioRpcError) -> str | None:
    try:
        trailers = exc.trailing_metadata() or ()
    except Exception:  # trailers are best effort
        return None
    for key, value in trailers:
        if key == ERROR_CODE_METADATA and isinstance(value, str) and value:
            return value
    return None


def problem_for_rpc_error(exc: grpc.aio.AioRpcError, instance: str | None = None) -> Response:
    """Map a failed service call to a problem: 4xx carry the service's detail and code, 5xx never
    carry internals (they are logged instead)."""
    status, default_code, safe = _GRPC_TO_HTTP.get(exc.code(), (500, "internal", False))
    code = _error_code_from_trailers(exc) or default_code
    headers = {}
    if status == 503:
        headers["Retry-After"] = RETRY_AFTER_UNAVAILABLE
    if status == 429:
        headers["Retry-After"] = "1"
    if safe:
        detail = exc.details() or None
    else:
        log.warning("service call failed", grpc_status=exc.code().name, grpc_detail=exc.details())
        detail = _SAFE_FALLBACK_DETAIL.get(status, "An internal error occurred.")
        if status == 500:
            code = "internal"
    return problem_response(status, code, detail=detail, instance=instance, headers=headers)


# ---- validation ------------------------------------------------------------------------------------


def _pointer(loc: tuple[Any, ...]) -> str:
    """A JSON pointer (RFC 6901) into the request part named by loc[0]."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in loc[1:]]
    return "#/" + "/".join(parts) if loc and loc[0] == "body" else "/".join(map(str, loc))


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"pointer": _pointer(tuple(e.get("loc", ()))), "detail": e.get("msg", ""), "code": e.get("type", "")}
        for e in exc.errors()
    ]


# ---- handlers --------------------------------------------------------------------------------------


def _instance(request: Request) -> str:
    return request.url.path


async def _on_problem(request: Request, exc: ProblemError) -> Response:
    return from_problem(exc, _instance(request))


async def _on_validation(request: Request, exc: RequestValidationError) -> Response:
    errors = validation_errors(exc)
    in_body = any(tuple(e.get("loc", ("",)))[:1] == ("body",) for e in exc.errors())
    # a well-formed body with wrong content is 422; bad path/query/header parameters are 400
    status, code = (422, "validation_failed") if in_body else (400, "invalid_request")
    return problem_response(
        status,
        code,
        detail="; ".join(f"{e['pointer']}: {e['detail']}" for e in errors)[:500],
        instance=_instance(request),
        errors=errors,
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 401: "missing_api_key"}


async def _on_http(request: Request, exc: StarletteHTTPException) -> Response:
    code = _HTTP_CODES.get(exc.status_code, "invalid_request" if exc.status_code < 500 else "internal")
    detail = exc.detail if isinstance(exc.detail, str) else None
    if code == "not_found" and detail == "Not Found":
        detail = f"No route for {request.method} {request.url.path}"
    return problem_response(
        exc.status_code, code, detail=detail, instance=_instance(request), headers=dict(exc.headers or {})
    )


async def _on_rpc(request: Request, exc: grpc.aio.AioRpcError) -> Response:
    return problem_for_rpc_error(exc, _instance(request))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    if dependency_down(exc):
        log.warning("dependency unavailable", route=route_template(request.scope), error=repr(exc))
        return problem_response(503, "dependency_unavailable", detail="A dependency is unavailable; retry later.",
                                instance=_instance(request), headers={"Retry-After": RETRY_AFTER_UNAVAILABLE})
    # the route template, never the raw path: paths carry identifiers such as emails (PII)
    log.exception("unhandled error", route=route_template(request.scope), method=request.method)
    return problem_response(
        500, "internal", detail="An internal error occurred.", instance=_instance(request)
    )


# The errors by which the gateway's own database or Valkey says it cannot be reached (see dependency_down).
# Handled by class, inside the app: the handler for Exception runs in Starlette's outermost middleware,
# which answers and then re-raises, so an outage would be logged as a crash of the ASGI application.
_DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # ConnectionError, TimeoutError, and socket errors of asyncpg's connect
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(grpc.aio.AioRpcError, _on_rpc)
    for error in _DEPENDENCY_ERRORS:
        app.add_exception_handler(error, _on_unexpected)
    app.add_exception_handler(Exception, _on_unexpected)
