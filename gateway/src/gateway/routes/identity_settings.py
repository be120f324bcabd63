"""Identity settings of the caller's tenant (admin): identifier rules, trait source priority,
lifecycle thresholds, computed-trait events. Identity validates; the JSON passes through unchanged."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Response

from gateway.auth import Admin
from gateway.resources import IdentityDep
from gateway.schemas.common import problem_responses
from gateway.schemas.identity_settings import IdentitySettings
from mcloud.identity.v1 import identity_pb2
from mcloud_common.grpc_client import tenant_metadata

router = APIRouter(prefix="/v1/identity/settings", tags=["settings"])


def _json(text: str) -> Response:
    # identity's JSON as it is: re-validating it here would drop or reject keys identity adds later
    return Response(text or "{}", media_type="application/json")


@router.get(
    "",
    response_model=IdentitySettings,
    responses=problem_responses(401, 403, 429, 503, 504),
    summary="Read the tenant's identity settings (defaults filled in)",
)
async def get_settings(principal: Admin, identity: IdentityDep) -> Response:
    response = await identity.GetSettings(
        identity_pb2.GetSettingsRequest(), metadata=tenant_metadata(principal.tenant_id)
    )
    return _json(response.settings_json)


@router.put(
    "",
    response_model=IdentitySettings,
    responses=problem_responses(400, 401, 403, 422, 429, 503, 504),
    summary="Replace the tenant's identity settings",
    description="The whole document: omitted keys go back to their defaults; unknown keys and invalid values "
    "are refused with a 400 naming each problem. Takes effect for new events within seconds.",
)
async def put_settings(body: IdentitySettings, principal: Admin, identity: IdentityDep) -> Response:
    response = await identity.UpdateSettings(
        identity_pb2.UpdateSettingsRequest(settings_json=orjson.dumps(body.model_dump(exclude_unset=True)).decode()),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return _json(response.settings_json)
