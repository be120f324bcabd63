"""Loyalty API: programs (tiers, earn rules, points policy) and their report, members, points
operations (earn, spend, adjust, reverse) and the member statement. Reads need `loyalty:read`,
changes `loyalty:write` (or `admin`). Every POST that changes state honours `Idempotency-Key`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import AwareDatetime

from gateway.auth import LoyaltyReader, LoyaltyWriter, Principal
from gateway.loyalty import entry_read, member_read, order_pb, program_pb, program_read, report_read
from gateway.profiles import resolve_profile_id
from gateway.resources import IdentityDep, LoyaltyDep
from gateway.routes.profile_admin import IdempotencyKey
from gateway.schemas.common import problem_responses
from gateway.schemas.loyalty import (
    AdjustRequest,
    Cursor,
    EarnRequest,
    EnrollRequest,
    LedgerPage,
    MemberRead,
    PointsResult,
    ProgramList,
    ProgramRead,
    ProgramReport,
    ProgramWrite,
    ReverseRequest,
    SpendRequest,
)
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.timestamps import set_timestamp

router = APIRouter(prefix="/v1/loyalty", tags=["loyalty"])
READ_ERRORS = problem_responses(400, 401, 403, 404, 429, 503, 504)
WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 429, 503, 504)
ProgramId = Annotated[uuid.UUID, Path(description="program id (UUID)")]
ProfileId = Annotated[
    str,
    Path(
        description="identity profile id (UUID), or type:value as the storefront knows the person "
        "(user_id:42, email:rachel@example.com, phone:+8613800000000)",
        examples=["user_id:42"],
        max_length=512,
    ),
]
ProgramQuery = Annotated[
    uuid.UUID | None, Query(description="the program; may be left out when the tenant has only one")
]
Limit = Annotated[int, Query(ge=1, le=500, description="items per page")]
CursorQuery = Annotated[Cursor | None, Query(description="next_cursor of the previous page")]


async def member_id(identity: IdentityDep, profile_id: str, principal: Principal) -> str:
    """The profile id of a member path: a UUID as given (loyalty follows merges itself), a type:value
    through identity (404 when nobody has that identifier)."""
    return await resolve_profile_id(identity, profile_id, tenant_metadata(principal.tenant_id))


def _key(idempotency_key: str | None) -> str:
    return idempotency_key or ""


# ---- programs -------------------------------------------------------------------------------------


@router.post(
    "/programs",
    response_model=ProgramRead,
    status_code=status.HTTP_201_CREATED,
    responses=WRITE_ERRORS,
    summary="Create a program",
    description="Tiers, earn rules and the points policy (validity, return window, expiry mode, tier basis and "
    "window, downgrade policy). With `Idempotency-Key`, a retry returns the program the first call created.",
)
async def create_program(
    body: ProgramWrite,
    response: Response,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> ProgramRead:
    result = await loyalty.UpsertProgram(
        pb.UpsertProgramRequest(program=program_pb("", body), idempotency_key=_key(idempotency_key)),
        metadata=tenant_metadata(principal.tenant_id),
    )
    response.headers["Location"] = f"/v1/loyalty/programs/{result.program.id}"
    return program_read(result.program)


@router.put(
    "/programs/{program_id}",
    response_model=ProgramRead,
    responses=WRITE_ERRORS,
    summary="Replace a program",
    description="The whole program is replaced (tiers and earn rules included; keep a rule's `id` to keep "
    "the rule). Tier changes apply at each member's next evaluation.",
)
async def replace_program(
    program_id: ProgramId,
    body: ProgramWrite,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> ProgramRead:
    result = await loyalty.UpsertProgram(
        pb.UpsertProgramRequest(program=program_pb(str(program_id), body), idempotency_key=_key(idempotency_key)),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return program_read(result.program)


@router.get("/programs", response_model=ProgramList, responses=READ_ERRORS, summary="List the tenant's programs")
async def list_programs(principal: LoyaltyReader, loyalty: LoyaltyDep) -> ProgramList:
    result = await loyalty.ListPrograms(pb.ListProgramsRequest(), metadata=tenant_metadata(principal.tenant_id))
    return ProgramList(programs=[program_read(p) for p in result.programs])


@router.get("/programs/{program_id}", response_model=ProgramRead, responses=READ_ERRORS, summary="Read a program")
async def get_program(program_id: ProgramId, principal: LoyaltyReader, loyalty: LoyaltyDep) -> ProgramRead:
    result = await loyalty.GetProgram(
        pb.GetProgramRequest(program_id=str(program_id)), metadata=tenant_metadata(principal.tenant_id)
    )
    return program_read(result.program)


@router.get(
    "/programs/{program_id}/report",
    response_model=ProgramReport,
    responses=READ_ERRORS,
    summary="Points liability, members per tier and activity per period",
    description="Outstanding points (the liability, in money when the program has a point value), members per "
    "tier, and points earned, spent, expired, reversed and adjusted per period of [from, to). Defaults: the "
    "last 12 months, by month.",
)
async def program_report(
    program_id: ProgramId,
    principal: LoyaltyReader,
    loyalty: LoyaltyDep,
    from_: Annotated[AwareDatetime | None, Query(alias="from", description="start (RFC 3339)")] = None,
    to: Annotated[AwareDatetime | None, Query(description="end, exclusive (RFC 3339)")] = None,
    period: Annotated[Literal["day", "week", "month"], Query(description="length of each period")] = "month",
) -> ProgramReport:
    request = pb.GetProgramReportRequest(program_id=str(program_id), period=period)
    _set_time(request, "from", from_)
    _set_time(request, "to", to)
    result = await loyalty.GetProgramReport(request, metadata=tenant_metadata(principal.tenant_id))
    return report_read(result)


def _set_time(message, field: str, value: datetime | None) -> None:
    if value is not None:
        set_timestamp(getattr(message, field), value)


# ---- members --------------------------------------------------------------------------------------


@router.post(
    "/programs/{program_id}/members",
    response_model=MemberRead,
    status_code=status.HTTP_201_CREATED,
    responses={**WRITE_ERRORS, 200: {"model": MemberRead, "description": "Already a member (unchanged)"}},
    summary="Enrol a profile (201 when enrolled now, 200 when already a member)",
    description="The member starts in the base tier and `member.enrolled` is emitted.",
)
async def enroll_member(
    program_id: ProgramId,
    body: EnrollRequest,
    response: Response,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> MemberRead:
    result = await loyalty.EnrollMember(
        pb.EnrollMemberRequest(
            program_id=str(program_id),
            profile_id=body.profile_id,
            source=body.source,
            idempotency_key=_key(idempotency_key),
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    response.status_code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    response.headers["Location"] = f"/v1/loyalty/members/{result.member.profile_id}?program_id={program_id}"
    return member_read(result.member)


@router.get(
    "/members/{profile_id}",
    response_model=MemberRead,
    responses=READ_ERRORS,
    summary="A member's balance, tier, distance to the next tier and benefits",
)
async def get_member(
    profile_id: ProfileId,
    identity: IdentityDep,
    principal: LoyaltyReader,
    loyalty: LoyaltyDep,
    program_id: ProgramQuery = None,
) -> MemberRead:
    result = await loyalty.GetMember(
        pb.GetMemberRequest(
            program_id=str(program_id or ""), profile_id=await member_id(identity, profile_id, principal)
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return member_read(result.member)


@router.post(
    "/members/{profile_id}/earn",
    response_model=PointsResult,
    responses=WRITE_ERRORS,
    summary="Credit explicit points, or the points an order earns",
    description="Explicit `points` (with a `reason`) are available at once unless `available_at` is set; an "
    "`order` is evaluated by the program's earn rules and its points stay pending for the return window.",
)
async def earn_points(
    profile_id: ProfileId,
    identity: IdentityDep,
    body: EarnRequest,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> PointsResult:
    request = pb.EarnPointsRequest(
        program_id=body.program_id,
        profile_id=await member_id(identity, profile_id, principal),
        reason=body.reason or "",
        description=body.description,
        qualifying=body.qualifying,
        idempotency_key=_key(idempotency_key),
    )
    if body.order is not None:
        request.order.CopyFrom(order_pb(body.order))
    else:
        request.points = body.points or 0
    _set_time(request, "available_at", body.available_at)
    result = await loyalty.EarnPoints(request, metadata=tenant_metadata(principal.tenant_id))
    return PointsResult(entries=[entry_read(e) for e in result.entries], member=member_read(result.member))


@router.post(
    "/members/{profile_id}/spend",
    response_model=PointsResult,
    responses=WRITE_ERRORS,
    summary="Debit available points (409 insufficient_points when too few)",
)
async def spend_points(
    profile_id: ProfileId,
    identity: IdentityDep,
    body: SpendRequest,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> PointsResult:
    result = await loyalty.SpendPoints(
        pb.SpendPointsRequest(
            program_id=body.program_id,
            profile_id=await member_id(identity, profile_id, principal),
            points=body.points,
            reason=body.reason,
            description=body.description,
            order_id=body.order_id,
            idempotency_key=_key(idempotency_key),
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return PointsResult(entries=[entry_read(result.entry)], member=member_read(result.member))


@router.post(
    "/members/{profile_id}/adjust",
    response_model=PointsResult,
    responses=WRITE_ERRORS,
    summary="Manual correction by an operator (actor and reason recorded)",
    description="A new adjustment entry, never an edit: positive credits, negative debits (409 when it would "
    "make the balance negative, unless `allow_negative`).",
)
async def adjust_points(
    profile_id: ProfileId,
    identity: IdentityDep,
    body: AdjustRequest,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> PointsResult:
    result = await loyalty.AdjustPoints(
        pb.AdjustPointsRequest(
            program_id=body.program_id,
            profile_id=await member_id(identity, profile_id, principal),
            points=body.points,
            actor=body.actor,
            reason=body.reason,
            description=body.description,
            qualifying=body.qualifying,
            allow_negative=body.allow_negative,
            idempotency_key=_key(idempotency_key),
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return PointsResult(entries=[entry_read(result.entry)], member=member_read(result.member))


@router.post(
    "/members/{profile_id}/reverse",
    response_model=PointsResult,
    responses=WRITE_ERRORS,
    summary="Reverse the points an order earned (a return), fully or pro rata to the refund",
    description="Pending points are reversed first; what the balance cannot cover is recorded as debt.",
)
async def reverse_order(
    profile_id: ProfileId,
    identity: IdentityDep,
    body: ReverseRequest,
    principal: LoyaltyWriter,
    loyalty: LoyaltyDep,
    idempotency_key: IdempotencyKey = None,
) -> PointsResult:
    result = await loyalty.ReverseOrder(
        pb.ReverseOrderRequest(
            program_id=body.program_id,
            profile_id=await member_id(identity, profile_id, principal),
            order_id=body.order_id,
            refund_minor=body.refund_minor,
            currency=body.currency or "",
            reason=body.reason,
            idempotency_key=_key(idempotency_key),
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return PointsResult(entries=[entry_read(e) for e in result.entries], member=member_read(result.member))


@router.get(
    "/members/{profile_id}/ledger",
    response_model=LedgerPage,
    responses=READ_ERRORS,
    summary="A member's statement: ledger entries, newest first, page by page",
)
async def member_ledger(
    profile_id: ProfileId,
    identity: IdentityDep,
    principal: LoyaltyReader,
    loyalty: LoyaltyDep,
    program_id: ProgramQuery = None,
    limit: Limit = 50,
    cursor: CursorQuery = None,
) -> LedgerPage:
    result = await loyalty.GetLedger(
        pb.GetLedgerRequest(
            program_id=str(program_id or ""),
            profile_id=await member_id(identity, profile_id, principal),
            page_size=limit,
            page_token=cursor or "",
        ),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return LedgerPage(entries=[entry_read(e) for e in result.entries], next_cursor=result.next_page_token or None)
