"""Liveness and readiness probes (no auth, no rate limit)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.errors import ProblemError
from gateway.readiness import check_all
from gateway.resources import ResourcesDep
from gateway.schemas.common import Liveness, Readiness, problem_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Liveness, summary="The process is alive (checks nothing else)")
async def healthz() -> Liveness:
    return Liveness()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=problem_responses(503),
    summary="Every dependency answers: database, Valkey and the five services",
)
async def readyz(resources: ResourcesDep) -> Readiness:
    dependencies = await check_all(resources)
    down = sorted(name for name, state in dependencies.items() if state != "ok")
    if down:
        raise ProblemError(
            "not_ready",
            f"Not ready: {', '.join(down)} down.",
            status=503,
            headers={"Retry-After": "1"},
            dependencies=dependencies,
        )
    return Readiness(status="ok", dependencies=dependencies)
