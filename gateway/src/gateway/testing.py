"""Test support for the gateway's route tests (and other suites calling the gateway): auth headers,
scoped secret keys, and the problem+json check."""

from __future__ import annotations

import httpx

from gateway.tenancy import create_api_key

PROBLEM = "application/problem+json"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """`response` is an RFC 9457 problem with `status` (and `code` when given); its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["type"] == f"/problems/{body['code']}"
    if code is not None:
        assert body["code"] == code, body
    return body


async def scoped_key(db, tenant, *scopes: str) -> dict[str, str]:
    """Auth headers of a new secret key of `tenant` with exactly `scopes`."""
    return bearer(await create_api_key(db, tenant.tenant_id, "secret", list(scopes)))
