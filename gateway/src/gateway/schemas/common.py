"""Schemas shared across domains: the problem document, readiness, the caller's identity."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
