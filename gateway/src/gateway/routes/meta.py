"""Who am I (SDK set-up checks) and the problem type documentation that `type` URIs point to."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.auth import AnyKey
from gateway.errors import CATALOGUE, ProblemError
from gateway.schemas.common import MeRead, problem_responses

router = APIRouter(tags=["account"])


@router.get(
    "/v1/me",
    response_model=MeRead,
    responses=problem_responses(401, 429),
    summary="The tenant and key kind behind the presented API key",
)
async def me(principal: AnyKey) -> MeRead:
    return MeRead(
        tenant_id=principal.tenant_id,
        tenant_name=principal.tenant_name,
        key_kind=principal.kind,
        key_prefix=principal.key_prefix,
        scopes=sorted(principal.scopes),
    )


@router.get("/problems/{code}", tags=["problems"], summary="What a problem `code` means")
async def problem_type(code: str) -> dict[str, object]:
    if code not in CATALOGUE:
        raise ProblemError("not_found", f"No problem type {code!r}.", status=404)
    status, title = CATALOGUE[code]
    return {"code": code, "status": status, "title": title}
