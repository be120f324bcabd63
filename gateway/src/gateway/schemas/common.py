"""Schemas shared across domains: the problem document, readiness, the caller's identity."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _encodable(value: dict[str, Any]) -> dict[str, Any]:
    try:
        orjson.dumps(value)
    except TypeError as exc:  # orjson.JSONEncodeError: integers beyond 64 bits, text that is not Unicode
        raise ValueError(f"must be encodable as JSON: {exc}") from None
    return value


# A free-form JSON object the gateway passes on to a service as JSON text: what cannot be encoded so (an
# integer beyond 64 bits, a lone surrogate) is a 422 here, not an error when the call is made.
JsonDict = Annotated[dict[str, Any], AfterValidator(_encodable)]


class FieldError(BaseModel):
    pointer: str = Field(description="JSON pointer into the body (#/...) or the parameter's location")
    detail: str
    code: str


class Problem(BaseModel):
    """RFC 9457 problem details, served as application/problem+json."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["/problems/invalid_api_key"])
    title: str
    status: int
    code: str = Field(description="stable, machine-readable snake_case error code")
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = Field(None, description="per-field details of a validation problem")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses."""
    return {
        s: {
            "model": Problem,
            "content": {"application/problem+json": {}},
            "description": _DESCRIPTIONS.get(s, ""),
        }
        for s in statuses
    }


_DESCRIPTIONS = {
    400: "Invalid request",
    401: "Missing or invalid API key",
    403: "Key not allowed here",
    404: "Not found",
    413: "Body too large",
    415: "Unsupported Content-Encoding",
    422: "Validation failed",
    429: "Rate limited (see Retry-After)",
    503: "A backing service is unavailable",
    504: "Upstream timeout",
}


class MeRead(BaseModel):
    tenant_id: str
    tenant_name: str
    key_kind: str = Field(description="'write' (publishable, events only) or 'secret'")
    key_prefix: str = Field(description="the first characters of the key, for display")
    scopes: list[str]


class Liveness(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    status: str = Field(description="'ok' when every dependency answers")
    dependencies: dict[str, str] = Field(description="dependency name -> 'ok' or the reason it is down")
