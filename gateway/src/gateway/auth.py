"""API-key authentication and authorisation as typed FastAPI dependencies.

Tracking endpoints (Segment-compatible) take the key from HTTP Basic (key as user name, empty
password), `Authorization: Bearer <key>` or the body's `writeKey`. Secret-key endpoints take
`Bearer sk_...` (or Basic with the secret key as user) and need a scope. Every authenticated request
then passes the per-key rate limit.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.security import HTTPBasic, HTTPBearer

from gateway.bodies import read_json
from gateway.errors import ProblemError
from gateway.resources import Resources, resources_of
from gateway.tenancy import ADMIN, SECRET, Principal, authenticate

REALM = 'realm="mcloud"'
CHALLENGE = {"WWW-Authenticate": f"Basic {REALM}, Bearer {REALM}"}


# Registered only so /docs shows both schemes and an Authorize button; parsing is done below so
# that malformed headers become problem+json like everything else.
class _DocumentedBasic(HTTPBasic):
    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


class _DocumentedBearer(HTTPBearer):
    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


basic_scheme = _DocumentedBasic(
    scheme_name="basic",
    auto_error=False,
    description="Write key (or secret key) as user name, empty password.",
)
bearer_scheme = _DocumentedBearer(
    scheme_name="bearer", auto_error=False, description="`Authorization: Bearer wk_...` or `sk_...`."
)


def key_from_headers(request: Request) -> str | None:
    """The key in the Authorization header (Basic user name, or Bearer token), None when absent."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "bearer" and credentials:
        return credentials
    if scheme == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ProblemError(
                "invalid_api_key", "The Basic credentials are not valid base64.", headers=CHALLENGE
            ) from None
        user, _, password = decoded.partition(":")
        # Segment: key as user name and empty password; some clients put it in the password instead
        return user or password or None
    raise ProblemError(
        "invalid_api_key", "Use Basic or Bearer authorization with an API key.", headers=CHALLENGE
    )


async def _principal(resources: Resources, key: str | None) -> Principal:
    if not key:
        raise ProblemError(
            "missing_api_key",
            "Send your key as the Basic auth user name, as a Bearer token, or as writeKey in the body.",
            headers=CHALLENGE,
        )
    principal = await authenticate(resources.pool, key, cache=resources.key_cache)
    if principal is None:
        raise ProblemError("invalid_api_key", "The API key is unknown or revoked.", headers=CHALLENGE)
    return principal


async def _rate_limit(resources: Resources, principal: Principal, response: Response) -> None:
    decision = await resources.limiter.check(principal.key_id)
    headers = decision.headers(resources.limiter.window)
    if not decision.allowed:
        raise ProblemError(
            "rate_limited",
            f"Rate limit of {resources.settings.rate_limit_per_second:g} requests/s "
            f"(burst {decision.limit}) exceeded for this key; retry after {decision.retry_after} s.",
            headers=headers,
            retry_after=decision.retry_after,
        )
    response.headers.update(headers)


def _require_scope(principal: Principal, scope: str, *, secret: bool) -> None:
    if secret and principal.kind != SECRET:
        raise ProblemError(
            "secret_key_required",
            "This endpoint needs a secret key (sk_...); write keys can only send events.",
        )
    if scope not in principal.scopes and ADMIN not in principal.scopes:  # admin implies every scope
        raise ProblemError(
            "insufficient_scope",
            f"The API key lacks the {scope!r} scope.",
            headers={"WWW-Authenticate": f'Bearer {REALM}, error="insufficient_scope", scope="{scope}"'},
            required_scope=scope,
        )


async def events_writer(
    request: Request,
    response: Response,
    _basic: Annotated[Any, Depends(basic_scheme)],
    _bearer: Annotated[Any, Depends(bearer_scheme)],
) -> Principal:
    """A key with events:write (a write key normally), from the header or the body's writeKey."""
    resources = resources_of(request)
    key = key_from_headers(request)
    if key is None:
        body = await read_json(request, _tracking_limit(request, resources))
        candidate = body.get("writeKey") if isinstance(body, dict) else None
        key = candidate if isinstance(candidate, str) else None
    principal = await _principal(resources, key)
    _require_scope(principal, "events:write", secret=False)
    await _rate_limit(resources, principal, response)
    return principal


def _tracking_limit(request: Request, resources: Resources) -> int:
    s = resources.settings
    return s.max_batch_bytes if request.url.path.endswith(("/batch", "/import")) else s.max_call_bytes


def secret_key(scope: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency factory: a secret key carrying `scope`."""

    async def dependency(
        request: Request,
        response: Response,
        _basic: Annotated[Any, Depends(basic_scheme)],
        _bearer: Annotated[Any, Depends(bearer_scheme)],
    ) -> Principal:
        resources = resources_of(request)
        principal = await _principal(resources, key_from_headers(request))
        _require_scope(principal, scope, secret=True)
        await _rate_limit(resources, principal, response)
        return principal

    dependency.__name__ = f"secret_key_{scope.replace(':', '_')}"
    return dependency


async def any_key(
    request: Request,
    response: Response,
    _basic: Annotated[Any, Depends(basic_scheme)],
    _bearer: Annotated[Any, Depends(bearer_scheme)],
) -> Principal:
    """Any valid key, write or secret."""
    resources = resources_of(request)
    principal = await _principal(resources, key_from_headers(request))
    await _rate_limit(resources, principal, response)
    return principal


EventsWriter = Annotated[Principal, Depends(events_writer)]
ProfilesReader = Annotated[Principal, Depends(secret_key("profiles:read"))]
ProfilesWriter = Annotated[Principal, Depends(secret_key("profiles:write"))]
SegmentsReader = Annotated[Principal, Depends(secret_key("segments:read"))]
SegmentsWriter = Annotated[Principal, Depends(secret_key("segments:write"))]
LoyaltyReader = Annotated[Principal, Depends(secret_key("loyalty:read"))]
LoyaltyWriter = Annotated[Principal, Depends(secret_key("loyalty:write"))]
JourneysReader = Annotated[Principal, Depends(secret_key("journeys:read"))]
JourneysWriter = Annotated[Principal, Depends(secret_key("journeys:write"))]
MessagingReader = Annotated[Principal, Depends(secret_key("messaging:read"))]
MessagingWriter = Annotated[Principal, Depends(secret_key("messaging:write"))]
AnalyticsReader = Annotated[Principal, Depends(secret_key("analytics:read"))]
RecommendReader = Annotated[Principal, Depends(secret_key("recommend:read"))]
RecommendWriter = Annotated[Principal, Depends(secret_key("recommend:write"))]
Admin = Annotated[Principal, Depends(secret_key(ADMIN))]
AnyKey = Annotated[Principal, Depends(any_key)]
