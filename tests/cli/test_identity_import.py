"""`mcloud identity import` as a user runs it (a subprocess) against a real gateway (uvicorn, in this
process) in front of a real identity service, both on free ports with their own databases."""

from __future__ import annotations

import asyncio
import csv
import json
import uuid
from pathlib import Path

import asyncpg
import pytest
import uvicorn

from gateway.app import create_app
from gateway.repo import MIGRATIONS as GATEWAY_MIGRATIONS
from gateway.settings import GatewaySettings
from gateway.tenancy import create_tenant
from identity.app import MIGRATIONS as IDENTITY_MIGRATIONS
from identity.app import build as build_identity
from identity.settings import IdentitySettings
from mcloud_common.db import asyncpg_dsn
from mcloud_common.embedded import free_port
from mcloud_common.testing.services import running_service, wait_until

from .conftest import mcloud

HEADER = ["Customer ID", "Email", "Mobile", "Name", "Tier"]


@pytest.fixture
async def stack(make_database, redis_url):
    """(gateway URL, secret key) of a gateway and identity service made for this test."""
    identity_url = await make_database("identity", migrations=IDENTITY_MIGRATIONS)
    gateway_url = await make_database("gw", migrations=GATEWAY_MIGRATIONS)
    conn = await asyncpg.connect(asyncpg_dsn(gateway_url))
    try:
        tenant = await create_tenant(conn, f"importer-{uuid.uuid4().hex[:8]}")
    finally:
        await conn.close()
    identity_settings = IdentitySettings(database_url=identity_url, redis_url=redis_url, grpc_port=0)
    async with running_service(build_identity, identity_settings, jobs=False) as (identity, _):
        port = free_port()
        app = create_app(GatewaySettings(database_url=gateway_url, redis_url=redis_url,
                                         identity_target=f"127.0.0.1:{identity.port}", key_cache_seconds=0))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        try:
            await wait_until(lambda: server.started, message="gateway serving")
            yield f"http://127.0.0.1:{port}", tenant.secret_key
        finally:
            server.should_exit = True
            await serving


def customers(n: int) -> list[tuple[list[str], str]]:
    """n rows and what each should give: every 10th has a broken email, every 25th no identifier at
    all, and rows from 500 on carry the email of row (number - 499): the same person again when that
    row was accepted."""
    out = []
    accepted_emails = set()
    for i in range(1, n + 1):
        email = f"c{i}@example.com" if i < 500 else f"c{i - 499}@example.com"
        if i % 25 == 0:
            out.append((["", "", "", f"Walk-in {i}", ""], "no_identifier"))
        elif i % 10 == 0:
            out.append(([f"cust-{i}", "not-an-email", "", f"Name {i}", "gold"], "invalid_email"))
        else:
            out.append(([f"cust-{i}" if i < 500 else "", email, "", f"Name {i}", "silver"],
                        "merged" if email in accepted_emails else "new"))
            accepted_emails.add(email)
    return out


def write_csv(path: Path, n: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(HEADER)
        out.writerows(cells for cells, _ in customers(n))
    return path


def expected(n: int) -> dict:
    outcomes = [o for _, o in customers(n)]
    rejected = {code: outcomes.count(code) for code in ("no_identifier", "invalid_email")}
    return {"accepted": outcomes.count("new") + outcomes.count("merged"), "merged": outcomes.count("merged"),
            "rejected": sum(rejected.values()), "rejected_by_code": rejected}


async def run(*args: str):
    return await asyncio.to_thread(mcloud, "identity", "import", *args)


async def test_import_reports_accepted_merged_and_rejected_rows(stack, tmp_path):
    url, key = stack
    data = write_csv(tmp_path / "customers.csv", 1200)
    rejects = tmp_path / "rejects.csv"
    result = await run(str(data), "--source", "crm", "--url", url, "--key", key, "--chunk", "300",
                       "--rejects", str(rejects), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {k: report[k] for k in ("accepted", "merged", "rejected", "rejected_by_code")} == expected(1200)
    assert report["last_row"] == 1200 and report["source"] == "crm" and report["name"] == "customers.csv"
    with rejects.open() as f:
        rejected = list(csv.reader(f))
    assert len(rejected) == report["rejected"]
    assert rejected[0][:2] == ["10", "invalid_email"]


async def test_a_second_run_with_the_same_import_id_resumes_after_the_last_stored_row(stack, tmp_path):
    url, key = stack
    full = write_csv(tmp_path / "full.csv", 1500)
    with full.open() as src, (tmp_path / "part.csv").open("w") as part:  # what a crashed run had sent
        part.writelines(line for n, line in enumerate(src) if n <= 700)
    first = await run(str(tmp_path / "part.csv"), "--url", url, "--key", key, "--import-id", "crm-nov", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["last_row"] == 700

    second = await run(str(full), "--url", url, "--key", key, "--import-id", "crm-nov", "--chunk", "400")
    assert second.returncode == 0, second.stderr
    assert "800 rows in" in second.stdout  # only rows 701-1500 were sent
    again = await run(str(full), "--url", url, "--key", key, "--import-id", "crm-nov", "--json")
    report = json.loads(again.stdout)
    assert report["resumed_after"] == 1500
    assert {k: report[k] for k in ("accepted", "merged", "rejected", "rejected_by_code")} == expected(1500)


async def test_the_default_import_id_follows_the_file(stack, tmp_path):
    url, key = stack
    data = write_csv(tmp_path / "same.csv", 60)
    one = json.loads((await run(str(data), "--url", url, "--key", key, "--json")).stdout)
    two = json.loads((await run(str(data), "--url", url, "--key", key, "--json")).stdout)
    assert one["import_id"] == two["import_id"] and two["resumed_after"] == 60 and two["accepted"] == one["accepted"]


async def test_failures_say_what_went_wrong_and_exit_1(stack, tmp_path):
    url, key = stack
    data = write_csv(tmp_path / "c.csv", 5)
    bad_key = await run(str(data), "--url", url, "--key", "sk_" + "0" * 43)
    assert bad_key.returncode == 1 and "401 invalid_api_key" in bad_key.stderr
    (tmp_path / "empty.csv").write_text("")
    empty = await run(str(tmp_path / "empty.csv"), "--url", url, "--key", key)
    assert empty.returncode == 1 and "is empty" in empty.stderr
    (tmp_path / "names.csv").write_text("Name,City\nAnn,Paris\n")
    no_ids = await run(str(tmp_path / "names.csv"), "--url", url, "--key", key)
    assert no_ids.returncode == 1 and "no_identifier_column" in no_ids.stderr
