"""Bulk import of customer files (CRM/POS exports), sent in chunks of rows and resumable: the same
cleaning and matching as identify calls, a running report of rows accepted / merged / rejected by
reason. Secret key with `imports:write` (or `admin`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from gateway.auth import secret_key
from gateway.profiles import time_field
from gateway.resources import IdentityDep
from gateway.schemas.common import problem_responses
from gateway.schemas.imports import ImportReportRead, ImportRowRejected, ImportRowsChunk, ImportRowsRead, ImportStart
from gateway.tenancy import Principal
from mcloud.identity.v1 import identity_pb2
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.ids import new_id_str

router = APIRouter(prefix="/v1/imports", tags=["imports"])
ImportsWriter = Annotated[Principal, Depends(secret_key("imports:write"))]
ImportId = Annotated[str, Path(max_length=200, description="the import's id", examples=["crm-2026-11"])]
_ERRORS = problem_responses(400, 401, 403, 404, 409, 413, 422, 429, 503, 504)
# A chunk of a few thousand rows is matched and stored in one transaction: more than the default deadline.
ROWS_TIMEOUT_SECONDS = 60.0


def report_read(r: identity_pb2.ImportReport) -> ImportReportRead:
    return ImportReportRead(
        import_id=r.import_id, name=r.name, source=r.source, columns=list(r.columns), last_row=r.last_row,
        accepted=r.accepted, merged=r.merged, rejected=r.rejected, rejected_by_code=dict(r.rejected_by_code),
        started_at=time_field(r, "started_at"), updated_at=time_field(r, "updated_at"),
    )


@router.post(
    "",
    response_model=ImportReportRead,
    responses=_ERRORS,
    summary="Start an import, or resume it (same import_id, same columns)",
    description="The report tells where to continue: send rows numbered after `last_row`. A resume with other "
    "columns or another source is refused with 409 `import_mismatch`.",
)
async def start_import(body: ImportStart, principal: ImportsWriter, identity: IdentityDep) -> ImportReportRead:
    response = await identity.StartImport(
        identity_pb2.StartImportRequest(import_id=body.import_id or new_id_str(), name=body.name, source=body.source,
                                        columns=body.columns),
        metadata=tenant_metadata(principal.tenant_id),
    )
    return report_read(response.report)


@router.post(
    "/{import_id}/rows",
    response_model=ImportRowsRead,
    responses=_ERRORS,
    summary="Import a chunk of rows (ascending row numbers; rows up to last_row are skipped)",
    description="Each row becomes an identify call on the import's source channel, cleaned and matched like any "
    "other (message id `import:{import_id}:{row}`, so a re-sent row is never stored twice). A row is rejected "
    "with a code: no_identifier, invalid_email, invalid_phone, blocked_identifier, column_count_mismatch, "
    "value_too_long, invalid_character, erased_identifier.",
)
async def import_rows(
    import_id: ImportId, body: ImportRowsChunk, principal: ImportsWriter, identity: IdentityDep
) -> ImportRowsRead:
    response = await identity.ImportRows(
        identity_pb2.ImportRowsRequest(
            import_id=import_id,
            rows=[identity_pb2.ImportRow(number=r.number, cells=r.cells) for r in body.rows],
        ),
        metadata=tenant_metadata(principal.tenant_id), timeout=ROWS_TIMEOUT_SECONDS,
    )
    return ImportRowsRead(
        report=report_read(response.report),
        rejected=[ImportRowRejected(number=r.number, code=r.code, detail=r.detail) for r in response.rejected],
    )


@router.get("/{import_id}", response_model=ImportReportRead, responses=_ERRORS, summary="An import's report")
async def get_import(import_id: ImportId, principal: ImportsWriter, identity: IdentityDep) -> ImportReportRead:
    response = await identity.GetImport(identity_pb2.GetImportRequest(import_id=import_id),
                                        metadata=tenant_metadata(principal.tenant_id))
    return report_read(response.report)
