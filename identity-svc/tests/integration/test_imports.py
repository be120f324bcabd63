"""Bulk imports through the real gRPC server: rows cleaned and matched like identify calls, a report
of accepted / merged / rejected rows by reason, resumable after the last stored row."""

from __future__ import annotations

import asyncio

import grpc
import orjson
import pytest

from mcloud.identity.v1 import identity_pb2 as pb

COLUMNS = ["User ID", "Email", "Phone", "Name", "crmId", "City"]

# The real service without background jobs (this area needs none; the relay still runs).
pytestmark = pytest.mark.without_jobs


def error_code(err: pytest.ExceptionInfo) -> str:
    return dict(err.value.trailing_metadata())["mcloud-error-code"]


def rows(*cells_by_row: list[str], first: int = 1) -> list[pb.ImportRow]:
    return [pb.ImportRow(number=first + i, cells=cells) for i, cells in enumerate(cells_by_row)]


async def start(api, import_id="crm-2026-11", columns=COLUMNS, source="crm") -> pb.ImportReport:
    got = await api.call("StartImport", pb.StartImportRequest(import_id=import_id, name="customers.csv",
                                                              source=source, columns=columns))
    return got.report


async def send(api, chunk, import_id="crm-2026-11") -> pb.ImportRowsResponse:
    return await api.call("ImportRows", pb.ImportRowsRequest(import_id=import_id, rows=chunk))


CHUNK = [
    ["u-1", "ann@example.com", "138 1234 5678", "Ann", "", "Shanghai"],     # new person
    ["", "Rachel@Example.com", "", "Rachel R.", "", "Beijing"],             # matches a known profile
    ["", "not-an-email", "", "Bad", "", ""],                                # invalid email
    ["", "", "12", "Bad", "", ""],                                          # invalid phone
    ["", "", "", "Nobody", "", "Paris"],                                    # no identifier
    ["", "ANN@example.com", "", "", "c-9", ""],                             # Ann again, same chunk
    ["u-2", "", "", "", "", "", "an extra cell"],                           # too many cells
    ["u-3"],                                                                # short rows are padded
]


async def test_rows_are_matched_cleaned_and_reported(api, db):
    known = await api.ingest(api.identify(user_id="rachel", email="rachel@example.com"))
    report = await start(api)
    assert (report.last_row, report.accepted, report.source, list(report.columns)) == (0, 0, "crm", COLUMNS)

    got = await send(api, rows(*CHUNK))
    r = got.report
    assert (r.last_row, r.accepted, r.merged, r.rejected) == (8, 4, 2, 4)
    assert dict(r.rejected_by_code) == {"invalid_email": 1, "invalid_phone": 1, "no_identifier": 1,
                                        "column_count_mismatch": 1}
    assert [(x.number, x.code) for x in got.rejected] == [
        (3, "invalid_email"), (4, "invalid_phone"), (5, "no_identifier"), (7, "column_count_mismatch")]
    assert got.rejected[0].detail.startswith("email: ")

    rachel = await api.profile("email:rachel@example.com")
    assert rachel.id == known.profile_ids[0]
    assert orjson.loads(rachel.traits_json)["City"] == "Beijing"
    ann = await api.profile("email:ann@example.com")
    assert (await api.profile("user_id:u-1")).id == ann.id
    assert orjson.loads(ann.traits_json)["Name"] == "Ann"
    # identifier columns go in as identifiers (normalised), found by the ingest path's matching
    assert (await api.profile("phone:+8613812345678")).id == ann.id
    assert (await api.profile("crm_id:c-9")).id == ann.id

    events = await db.fetch("SELECT message_id, channel, type FROM events WHERE tenant_id = $1 AND channel = 'crm' "
                            "ORDER BY message_id", api.tenant)
    assert [(e["message_id"], e["type"]) for e in events] == [
        (f"import:crm-2026-11:{n}", "identify") for n in (1, 2, 6, 8)]


async def test_a_resumed_import_skips_the_rows_it_stored_and_counts_each_row_once(api, db):
    await start(api)
    await send(api, rows(*CHUNK[:4]))
    # the client crashed and comes back: start again with the same id, resend from its own start
    report = await start(api)
    assert (report.last_row, report.accepted, report.rejected) == (4, 2, 2)
    got = await send(api, rows(*CHUNK))
    assert (got.report.last_row, got.report.accepted, got.report.rejected) == (8, 4, 4)
    assert [x.number for x in got.rejected] == [5, 7]  # rows 1-4 were not looked at again
    stored = await db.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1 AND message_id LIKE 'import:%'",
                               api.tenant)
    assert stored == 4
    again = await api.call("GetImport", pb.GetImportRequest(import_id="crm-2026-11"))
    assert again.report == got.report


async def test_concurrent_sends_of_one_chunk_store_it_once(api):
    await start(api)
    chunk = rows(*([f"u-{i}", f"p{i}@example.com", "", "", "", ""] for i in range(1, 201)))
    first, second = await asyncio.gather(send(api, chunk), send(api, chunk))
    assert sorted([first.report.accepted, second.report.accepted]) == [200, 200]
    final = await api.call("GetImport", pb.GetImportRequest(import_id="crm-2026-11"))
    assert (final.report.accepted, final.report.last_row) == (200, 200)


async def test_custom_identifier_types_of_the_tenant_are_identifier_columns(api):
    await api.call("UpdateSettings", pb.UpdateSettingsRequest(settings_json=orjson.dumps(
        {"identifiers": {"loyalty_no": {"priority": 9, "limit": 1}}}).decode()))
    await start(api, "pos-1", columns=["Loyalty No", "Store"], source="pos")
    got = await send(api, rows(["L-100", "Xuhui"], ["", "Pudong"]), import_id="pos-1")
    assert (got.report.accepted, got.report.rejected) == (1, 1)
    profile = await api.profile("loyalty_no:L-100")
    assert orjson.loads(profile.traits_json)["Store"] == "Xuhui"


async def test_a_resume_with_another_file_is_refused(api):
    await start(api)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await start(api, columns=["Email", "Name"])
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and error_code(err) == "import_mismatch"


@pytest.mark.parametrize(("request_", "code"), [
    (pb.StartImportRequest(import_id="x", source="erp", columns=["email"]), "invalid_source"),
    (pb.StartImportRequest(import_id="x", source="crm"), "missing_columns"),
    (pb.StartImportRequest(import_id="x y", source="crm", columns=["email"]), "invalid_import_id"),
    (pb.StartImportRequest(import_id="x", source="crm", columns=["Email", "email"]), "duplicate_column"),
    (pb.StartImportRequest(import_id="x", source="crm", columns=["Name", "City"]), "no_identifier_column"),
])
async def test_a_start_that_cannot_work_is_refused(api, request_, code):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.call("StartImport", request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_code(err) == code


async def test_bad_chunks_and_unknown_imports_are_refused(api):
    await start(api)
    cases = [
        ("ImportRows", pb.ImportRowsRequest(import_id="crm-2026-11", rows=rows(["a"], ["b"], first=0)),
         grpc.StatusCode.INVALID_ARGUMENT, "invalid_row_number"),
        ("ImportRows", pb.ImportRowsRequest(import_id="crm-2026-11",
                                            rows=[pb.ImportRow(number=2), pb.ImportRow(number=1)]),
         grpc.StatusCode.INVALID_ARGUMENT, "invalid_row_number"),
        ("ImportRows", pb.ImportRowsRequest(import_id="crm-2026-11", rows=rows(*([["x"]] * 5001))),
         grpc.StatusCode.INVALID_ARGUMENT, "chunk_too_large"),
        ("ImportRows", pb.ImportRowsRequest(import_id="nope", rows=rows(["u-1"])),
         grpc.StatusCode.NOT_FOUND, "import_not_found"),
        ("GetImport", pb.GetImportRequest(import_id="nope"), grpc.StatusCode.NOT_FOUND, "import_not_found"),
    ]
    for method, request, status, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.call(method, request)
        assert (err.value.code(), error_code(err)) == (status, code), method


# 1000 characters (a valid crm_id) but 3 kB of incompressible UTF-8: over PostgreSQL's index row limit
WIDE = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(1000))


async def test_values_postgres_cannot_hold_reject_only_their_row(api):
    await start(api)
    got = await send(api, rows(["u-1", "", "", "Ann\x00", "", ""], ["u-2", "", "", "x" * 5000, "", ""],
                               ["u-3", "", "", "Ok", "", ""],
                               ["", "", "", "Too wide", WIDE, ""],
                               ["u-5", "", "", "Ok too", "", ""]))
    assert (got.report.accepted, dict(got.report.rejected_by_code)) == (
        2, {"invalid_character": 1, "value_too_long": 1, "unstorable_value": 1})
    assert [x.number for x in got.rejected] == [1, 2, 4]
