"""Domain errors. Services raise these; one gRPC interceptor maps them to a status, and the gateway
maps the status to problem+json. `code` is stable and machine-readable (e.g. "profile_not_found")."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a client is allowed to see."""

    default_code = "domain_error"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.extra = extra


class NotFound(DomainError):
    default_code = "not_found"


class AlreadyExists(DomainError):
    default_code = "already_exists"


class InvalidArgument(DomainError):
    default_code = "invalid_argument"


class FailedPrecondition(DomainError):
    default_code = "failed_precondition"


class PermissionDenied(DomainError):
    default_code = "permission_denied"


class Unauthenticated(DomainError):
    default_code = "unauthenticated"


class ResourceExhausted(DomainError):
    default_code = "resource_exhausted"


class Unavailable(DomainError):
    default_code = "unavailable"
