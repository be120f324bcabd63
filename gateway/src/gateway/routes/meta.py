"""Who am I (SDK set-up checks) and the problem type documentation that `type` URIs point to."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from gateway.auth import AnyKey
from gateway.errors import CATALOGUE, ProblemError
from gateway.schemas.common import MeRead, problem_responses
from gateway.tenancy import SECRET

router = APIRouter(tags=["account"])


class MeWriteKey(BaseModel):
    """What /v1/me tells a publishable write key: nothing about the tenant, since write keys are
    shipped in browsers and apps for anyone to read."""

    key_kind: Literal["write"] = Field(description="'write': publishable, events only")
    scopes: list[str]


@router.get(
    "/v1/me",
    response_model=MeRead | MeWriteKey,
    responses=problem_responses(401, 429),
    summary="The key kind and scopes behind the presented API key (and, for a secret key, the tenant)",
    description="A secret key learns its tenant (id and name) and key prefix; a publishable write key "
    "learns only its kind and scopes.",
)
async def me(principal: AnyKey) -> MeRead | MeWriteKey:
    if principal.kind != SECRET:
        return MeWriteKey(key_kind="write", scopes=sorted(principal.scopes))
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
