"""Members and their points: EnrollMember, GetMember, EarnPoints, SpendPoints, ReverseOrder,
AdjustPoints, GetLedger. Idempotency of the point-changing calls lives in the ledger itself: every
entry carries a unique key derived from the call's idempotency_key (orders: from the order id), checked
under the member's row lock, so a retry, even a concurrent one, never books twice."""

from __future__ import annotations

from loyalty.grpc_api.base import Context, ServicerBase, require_uuid
from loyalty.ledger_lanes import Op
from loyalty.repo import ledger
from loyalty.repo import members as member_repo
from loyalty.repo.events import publish
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.errors import InvalidArgument
from mcloud_common.grpc_server import tenant_id
from mcloud_common.ids import new_id_str
from mcloud_common.timestamps import from_timestamp


def ledger_key(method: str, idempotency_key: str) -> str:
    """The ledger's idempotency key of a call: the caller's key scoped to the method (a retry books
    nothing again and returns the entries the first call booked), or a fresh one."""
    return f"{method}:{idempotency_key}" if idempotency_key else f"{method}:{new_id_str()}"


class MembersApi(ServicerBase):
    async def EnrollMember(self, request: pb.EnrollMemberRequest, context: Context) -> pb.EnrollMemberResponse:
        tenant = tenant_id(context)
        require_uuid(request.profile_id, "profile_id")
        program = await self._programs.get(self._pool, tenant, request.program_id)
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            row, events = await member_repo.enroll(conn, tenant, program, request.profile_id,
                                                   request.source or "api", now)
            await publish(conn, events, self._shards)
            member = await member_repo.view(conn, tenant, program, row, now)
        return pb.EnrollMemberResponse(member=member, created=bool(events))

    async def GetMember(self, request: pb.GetMemberRequest, context: Context) -> pb.GetMemberResponse:
        tenant = tenant_id(context)
        require_uuid(request.profile_id, "profile_id")
        program = await self._programs.get(self._pool, tenant, request.program_id)
        # one snapshot for the member row, its lots and its qualifying facts: read committed would let an
        # earn commit between the statements (new points shown with the tier from before them)
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            row = await member_repo.get(conn, tenant, program.id, request.profile_id)
            return pb.GetMemberResponse(member=await member_repo.view(conn, tenant, program, row, self._clock.now()))

    async def EarnPoints(self, request: pb.EarnPointsRequest, context: Context) -> pb.EarnPointsResponse:
        tenant = tenant_id(context)
        require_uuid(request.profile_id, "profile_id")
        program = await self._programs.get(self._pool, tenant, request.program_id)
        basis = request.WhichOneof("basis")
        if basis is None:
            raise InvalidArgument("points or order is required", code="missing_basis", field="points")
        if basis == "order":
            ledger.check_order(program, request.order)
            op = Op("order", request.profile_id, order=request.order)
        else:
            if request.points <= 0:
                raise InvalidArgument("points must be > 0", code="invalid_points", field="points")
            op = Op("points", request.profile_id, points=request.points,
                    key=ledger_key("EarnPoints", request.idempotency_key), reason=request.reason,
                    description=request.description, qualifying=request.qualifying,
                    available_at=from_timestamp(request.available_at) if request.HasField("available_at") else None)
        entries, member = await self._lanes.submit(tenant, program, op)
        return pb.EarnPointsResponse(entries=entries, member=member)

    async def SpendPoints(self, request: pb.SpendPointsRequest, context: Context) -> pb.SpendPointsResponse:
        tenant = tenant_id(context)
        require_uuid(request.profile_id, "profile_id")
        program = await self._programs.get(self._pool, tenant, request.program_id)
        if request.points <= 0:
            raise InvalidArgument("points must be > 0", code="invalid_points", field="points")
        op = Op("spend", request.profile_id, points=request.points,
                key=ledger_key("SpendPoints", request.idempotency_key), reason=request.reason or "spend",
                description=request.description, order_id=request.order_id)
        entries, member = await self._lanes.submit(tenant, program, op)
        return pb.SpendPointsResponse(entry=entries[0], member=member)

    async def ReverseOrder(self, request: pb.ReverseOrderRequest, context: Context) -> pb.ReverseOrderResponse:
        tenant = tenant_id(context)
        require_uuid(request.profile_id, "profile_id")
        program = await self._programs.get(self._pool, tenant, request.program_id)
        if request.currency and request.currency.upper() != program.currency:
            raise InvalidArgument(f"currency {request.currency} is not the program's ({program.currency})",
                                  code="currency_mismatch", field="currency")
        now = self._clock.now()
        key = ledger_key("ReverseOrder", request.idempotency_key)

        async def run() -> pb.ReverseOrderResponse:
            async with conn.transaction():
                entries, member = await ledger.reverse_order(
                    conn, tenant, program, request.profile_id, request.order_id, request.refund_minor, key=key,
                    reason=request.reason, now=now, shards=self._shards)
            return pb.ReverseOrderResponse(entries=entries, member=member)

        async with self._pool.acquire() as conn:
            return await run()

    async def AdjustPoints(self, request: pb.AdjustPointsRequest, context: Context) -> pb.AdjustPointsResponse:
        tenant = tenant_id(context)
        require_uuid(request.profile_id, "profile_id")
        program = await self._programs.get(self._pool, tenant, request.program_id)
        now = self._clock.now()
        key = ledger_key("AdjustPoints", request.idempotency_key)

        async def run() -> pb.AdjustPointsResponse:
            async with conn.transaction():
                entry, member = await ledger.adjust(conn, tenant, program, request, key=key, now=now,
                                                    shards=self._shards)
            return pb.AdjustPointsResponse(entry=entry, member=member)

        async with self._pool.acquire() as conn:
            return await run()

    async def GetLedger(self, request: pb.GetLedgerRequest, context: Context) -> pb.GetLedgerResponse:
        tenant = tenant_id(context)
        require_uuid(request.profile_id, "profile_id")
        program = await self._programs.get(self._pool, tenant, request.program_id)
        async with self._pool.acquire() as conn:
            row = await member_repo.get(conn, tenant, program.id, request.profile_id)
            entries, token = await ledger.page(conn, tenant, program.id, str(row["profile_id"]), request.page_size,
                                               request.page_token)
        return pb.GetLedgerResponse(entries=entries, next_page_token=token)
