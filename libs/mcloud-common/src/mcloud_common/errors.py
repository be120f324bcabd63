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


def dependency_down(exc: BaseException) -> bool:
    """True when `exc` says a database or Valkey could not be reached (a condition to retry, answered
    as UNAVAILABLE / 503 with Retry-After, never as an internal error)."""
    import asyncpg
    import redis.exceptions

    return isinstance(exc, (
        ConnectionError,  # includes ConnectionRefusedError / ResetError
        TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.exceptions.OperatorInterventionError,  # admin/crash shutdown, cannot connect now
        asyncpg.exceptions.TooManyConnectionsError,
        asyncpg.InterfaceError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
    )) or (isinstance(exc, OSError) and exc.errno is not None)
