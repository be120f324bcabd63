"""EraseProfile, ExportProfile, tracking plans (and the plan check on the ingest path), bulk imports."""

from __future__ import annotations

import asyncpg
import orjson

from identity.domain.calls import Call
from identity.domain.imports import check_start, has_identifier_column
from identity.domain.tracking_plan import parse_plan
from identity.grpc_api.base import Context, ServicerBase
from identity.repo import imports as imports_repo
from identity.repo import privacy as privacy_repo
from identity.repo import tracking as tracking_repo
from mcloud.identity.v1 import identity_pb2
from mcloud_common.errors import InvalidArgument, NotFound
from mcloud_common.grpc_server import tenant_id
from mcloud_common.idempotency import once
from mcloud_common.ids import parse_uuid
from mcloud_common.timestamps import to_timestamp

PLAN_VIOLATION = "tracking_plan_violation"
MAX_IMPORT_ROWS = 5000
MAX_IMPORT_NAME = 500


def _report(r: asyncpg.Record) -> identity_pb2.ImportReport:
    return identity_pb2.ImportReport(
        import_id=r["id"], name=r["name"], source=r["source"], columns=r["columns"], last_row=r["last_row"],
        accepted=r["accepted"], merged=r["merged"], rejected=r["rejected"], rejected_by_code=r["rejected_by_code"],
        started_at=to_timestamp(r["started_at"]), updated_at=to_timestamp(r["updated_at"]),
    )


def _mark(call: Call, detail: str) -> None:
    """Flagged events carry what they broke in their context (stored and published with them)."""
    context = orjson.loads(call.context_json or "{}")
    context.setdefault("tracking_plan_violations", []).append(detail)
    call.context_json = orjson.dumps(context).decode()


class PrivacyApi(ServicerBase):
    # ---- tracking plan ---------------------------------------------------------------------------

    def _plans(self):
        return self.cache("tracking_plan", tracking_repo.load_plan)

    async def apply_tracking_plan(self, conn: asyncpg.Connection, tenant: str, calls: list[Call]
                                  ) -> dict[int, tuple[str, str]]:
        """Check `calls` against the tenant's tracking plan (if any) and count violations. Returns
        {index in calls: (code, detail)} for the events the plan blocks; flagged events stay in."""
        if not calls:
            return {}
        plan = await self._plans().get(conn, tenant)
        if plan is None:
            return {}
        outcome = "blocked" if plan.blocks else "flagged"
        blocked: dict[int, tuple[str, str]] = {}
        counts: dict[tuple[str, str], tuple[int, str]] = {}
        for j, call in enumerate(calls):
            violation = plan.check(call)
            if violation is None:
                continue
            seen, _ = counts.get((violation.event, outcome), (0, ""))
            counts[(violation.event, outcome)] = (seen + 1, violation.detail)
            if plan.blocks:
                blocked[j] = (PLAN_VIOLATION, violation.detail)
            else:
                _mark(call, violation.detail)
        await tracking_repo.count_violations(conn, tenant, counts, self._clock.now())
        return blocked

    async def SetTrackingPlan(self, request: identity_pb2.SetTrackingPlanRequest, context: Context):
        tenant = tenant_id(context)
        plan = parse_plan(request.plan_json)
        async with self._pool.acquire() as conn:
            await tracking_repo.save_plan(conn, tenant, plan, self._clock.now())
        self._plans().put(tenant, plan)
        return identity_pb2.SetTrackingPlanResponse(plan_json=plan.to_json() if plan is not None else "")

    async def GetTrackingPlan(self, request: identity_pb2.GetTrackingPlanRequest, context: Context):
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn:
            plan = await tracking_repo.load_plan(conn, tenant)
            rows = await tracking_repo.list_violations(conn, tenant)
        return identity_pb2.GetTrackingPlanResponse(
            plan_json=plan.to_json() if plan is not None else "",
            violations=[identity_pb2.TrackingPlanViolations(
                event=r["event"], outcome=r["outcome"], count=r["count"], last_error=r["last_error"],
                last_seen_at=to_timestamp(r["last_seen_at"])) for r in rows],
        )

    # ---- privacy ---------------------------------------------------------------------------------

    async def EraseProfile(self, request: identity_pb2.EraseProfileRequest, context: Context):
        tenant = tenant_id(context)
        if parse_uuid(request.profile_id) is None:
            raise InvalidArgument("profile_id must be a UUID", code="invalid_profile_id")
        async with self._pool.acquire() as conn:
            async def run() -> identity_pb2.EraseProfileResponse:
                await privacy_repo.erase(conn, tenant, request.profile_id, at=self._clock.now(), shards=self._shards)
                return identity_pb2.EraseProfileResponse(erased=True)

            return await once(conn, tenant, "EraseProfile", request.idempotency_key,
                              identity_pb2.EraseProfileResponse, run)

    async def ExportProfile(self, request: identity_pb2.ExportProfileRequest, context: Context):
        tenant = tenant_id(context)
        if parse_uuid(request.profile_id) is None:
            raise InvalidArgument("profile_id must be a UUID", code="invalid_profile_id")
        async with self._pool.acquire() as conn:
            person = await privacy_repo.find_person(conn, tenant, request.profile_id)
            if person.erased_at is not None:
                raise NotFound(f"profile {request.profile_id} was erased", code="profile_erased")
            data = await privacy_repo.export(conn, tenant, person.survivor, at=self._clock.now())
        return identity_pb2.ExportProfileResponse(export_json=data.decode())

    # ---- bulk import -----------------------------------------------------------------------------

    async def StartImport(self, request: identity_pb2.StartImportRequest, context: Context):
        tenant = tenant_id(context)
        columns = list(request.columns)
        check_start(request.import_id, request.source, columns)
        if len(request.name) > MAX_IMPORT_NAME or "\x00" in request.name:
            raise InvalidArgument(f"name: at most {MAX_IMPORT_NAME} characters, no NUL", code="invalid_name")
        async with self._pool.acquire() as conn:
            settings = await self.tenant_settings(conn, tenant)
            if not has_identifier_column(columns, settings):
                raise InvalidArgument("no column is an identifier (user_id, email, phone, member_id, crm_id, ...)",
                                      code="no_identifier_column")
            report = await imports_repo.start(conn, tenant, request.import_id, name=request.name,
                                              source=request.source, columns=columns, at=self._clock.now())
        return identity_pb2.StartImportResponse(report=_report(report))

    async def ImportRows(self, request: identity_pb2.ImportRowsRequest, context: Context):
        tenant = tenant_id(context)
        if not request.import_id:
            raise InvalidArgument("import_id is required", code="invalid_import_id")
        if len(request.rows) > MAX_IMPORT_ROWS:
            raise InvalidArgument(f"at most {MAX_IMPORT_ROWS} rows per call", code="chunk_too_large")
        rows = [imports_repo.Row(r.number, r.cells) for r in request.rows]
        previous = 0
        for row in rows:
            if row.number <= previous:
                raise InvalidArgument("row numbers must be 1 or more and ascending within a chunk",
                                      code="invalid_row_number")
            previous = row.number
        async with self._pool.acquire() as conn:
            settings = await self.tenant_settings(conn, tenant)
            result = await imports_repo.import_rows(conn, tenant, request.import_id, rows, settings=settings,
                                                    shards=self._shards, now=self._clock.now())
        return identity_pb2.ImportRowsResponse(
            report=_report(result.report),
            rejected=[identity_pb2.ImportRowRejection(number=n, code=c, detail=d) for n, c, d in result.rejected],
        )

    async def GetImport(self, request: identity_pb2.GetImportRequest, context: Context):
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn:
            report = await imports_repo.get(conn, tenant, request.import_id)
        return identity_pb2.GetImportResponse(report=_report(report))
