"""Programs: UpsertProgram, GetProgram, ListPrograms, GetProgramReport."""

from __future__ import annotations

from datetime import timedelta

from loyalty.domain import programs as prog
from loyalty.grpc_api.base import Context, ServicerBase
from loyalty.repo import programs as program_repo
from loyalty.repo import report as report_repo
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.errors import InvalidArgument
from mcloud_common.grpc_server import tenant_id
from mcloud_common.idempotency import once
from mcloud_common.timestamps import from_timestamp


class ProgramsApi(ServicerBase):
    async def UpsertProgram(self, request: pb.UpsertProgramRequest, context: Context) -> pb.UpsertProgramResponse:
        tenant = tenant_id(context)
        if not request.HasField("program"):
            raise InvalidArgument("program is required", code="missing_program", field="program")
        program = prog.validate(request.program)

        async def run() -> pb.UpsertProgramResponse:
            saved = await program_repo.save(conn, tenant, program, self._clock.now())
            return pb.UpsertProgramResponse(program=saved)

        async with self._pool.acquire() as conn:
            response = await once(conn, tenant, "UpsertProgram", request.idempotency_key,
                                  pb.UpsertProgramResponse, run)
        self._programs.forget(tenant)
        return response

    async def GetProgram(self, request: pb.GetProgramRequest, context: Context) -> pb.GetProgramResponse:
        tenant = tenant_id(context)
        self._programs.forget(tenant)
        return pb.GetProgramResponse(program=await self._programs.get(self._pool, tenant, request.program_id))

    async def ListPrograms(self, request: pb.ListProgramsRequest, context: Context) -> pb.ListProgramsResponse:
        tenant = tenant_id(context)
        self._programs.forget(tenant)
        return pb.ListProgramsResponse(programs=list((await self._programs.all(self._pool, tenant)).values()))

    async def GetProgramReport(self, request: pb.GetProgramReportRequest, context: Context
                               ) -> pb.GetProgramReportResponse:
        tenant = tenant_id(context)
        program = await self._programs.get(self._pool, tenant, request.program_id)
        now = self._clock.now()
        # by default up to now, inclusive
        to = from_timestamp(request.to) if request.HasField("to") else now + timedelta(microseconds=1)
        start = from_timestamp(getattr(request, "from")) if request.HasField("from") else prog.add_months(to, -12)
        period = request.period or "month"
        if period not in ("day", "week", "month"):
            raise InvalidArgument("period must be day, week or month", code="invalid_period", field="period")
        if start >= to:
            raise InvalidArgument("from must be before to", code="invalid_range", field="from")
        async with self._pool.acquire() as conn:
            return await report_repo.report(conn, tenant, program, start, to, period, now)
