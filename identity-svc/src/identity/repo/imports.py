"""Bulk imports: the running report per import, and one chunk of rows stored through the ingest path
(same cleaning, matching, events and outbox as live identify calls) in the transaction that moves
the report on, so a chunk counts exactly once and a resumed import continues after `last_row`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from identity.domain.calls import Call, Rejected
from identity.domain.imports import map_columns, row_call
from identity.domain.resolution import Key
from identity.domain.settings import TenantSettings
from identity.repo import ingest as ingest_repo
from mcloud_common.errors import FailedPrecondition, NotFound

# Values PostgreSQL refuses that row checks did not foresee: the chunk is retried a row at a time.
_COLUMNS = "id, name, source, columns, last_row, accepted, merged, rejected, rejected_by_code, started_at, updated_at"


@dataclass(frozen=True)
class Row:
    number: int
    cells: Sequence[str]


@dataclass
class ChunkResult:
    report: asyncpg.Record
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (row number, code, detail)


async def start(conn: asyncpg.Connection, tenant_id: str, import_id: str, *, name: str, source: str,
                columns: list[str], at: datetime) -> asyncpg.Record:
    """Open the import, or return it as it stands when it exists with the same source and columns
    (a resume); FailedPrecondition "import_mismatch" when it exists with others."""
    created = await conn.fetchrow(
        f"""
        INSERT INTO imports (tenant_id, id, name, source, columns, started_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING RETURNING {_COLUMNS}
        """,
        tenant_id, import_id, name, source, columns, at,
    )
    if created is not None:
        return created
    existing = await get(conn, tenant_id, import_id)
    if existing["source"] != source or list(existing["columns"]) != columns:
        raise FailedPrecondition(
            f"import {import_id!r} was started with source {existing['source']!r} and other columns; "
            "resume it with the same file or start a new import id", code="import_mismatch")
    return existing


async def get(conn: asyncpg.Connection, tenant_id: str, import_id: str, *, for_update: bool = False
              ) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM imports WHERE tenant_id = $1 AND id = $2{' FOR UPDATE' if for_update else ''}",
        tenant_id, import_id,
    )
    if row is None:
        raise NotFound(f"no import {import_id!r}", code="import_not_found")
    return row


async def import_rows(conn: asyncpg.Connection, tenant_id: str, import_id: str, rows: Sequence[Row], *,
                      settings: TenantSettings, shards: int, now: datetime) -> ChunkResult:
    """Store the rows after the import's last_row (the others were stored before) and add them to
    the report, all in one transaction. Rows are in ascending number order."""
    async with conn.transaction():
        report = await get(conn, tenant_id, import_id, for_update=True)  # chunks of one import take turns
        columns = map_columns(report["columns"], settings)
        result = ChunkResult(report)
        calls: list[Call] = []
        numbers: list[int] = []
        keys: list[list[Key]] = []
        fresh = [r for r in rows if r.number > report["last_row"]]
        if not fresh:
            return result
        for row in fresh:
            try:
                call, row_keys = row_call(row.cells, columns, settings, import_id=import_id, source=report["source"],
                                          number=row.number, now=now)
            except Rejected as rej:
                result.rejected.append((row.number, rej.code, rej.detail))
                continue
            calls.append(call)
            numbers.append(row.number)
            keys.append(row_keys)
        known = await _known(conn, tenant_id, {k for ks in keys for k in ks})
        stored = await _ingest(conn, tenant_id, calls, settings=settings, shards=shards, now=now)
        accepted = merged = 0
        seen: set[Key] = set()
        for j, number in enumerate(numbers):
            if j in stored:
                result.rejected.append((number, *stored[j]))
                continue
            accepted += 1
            # "merged": the row met a person who existed before it (before this chunk, or an earlier row of it)
            if any(k in known or k in seen for k in keys[j]):
                merged += 1
            seen.update(keys[j])
        by_code = dict(report["rejected_by_code"])
        for _, code, _ in result.rejected:
            by_code[code] = by_code.get(code, 0) + 1
        result.rejected.sort()
        result.report = await conn.fetchrow(
            f"""
            UPDATE imports SET last_row = $3, accepted = accepted + $4, merged = merged + $5,
                   rejected = rejected + $6, rejected_by_code = $7, updated_at = $8
            WHERE tenant_id = $1 AND id = $2 RETURNING {_COLUMNS}
            """,
            tenant_id, import_id, fresh[-1].number, accepted, merged, len(result.rejected), by_code, now,
        )
    return result


async def _known(conn: asyncpg.Connection, tenant_id: str, keys: set[Key]) -> set[Key]:
    if not keys:
        return set()
    ordered = sorted(keys)
    rows = await conn.fetch(
        """
        SELECT i.type, i.value FROM unnest($2::text[], $3::text[]) AS k(type, value)
        JOIN identifiers i ON i.tenant_id = $1 AND i.type = k.type AND i.value = k.value
        """,
        tenant_id, [k[0] for k in ordered], [k[1] for k in ordered],
    )
    return {(r["type"], r["value"]) for r in rows}


async def _ingest(conn: asyncpg.Connection, tenant_id: str, calls: list[Call], *, settings: TenantSettings,
                  shards: int, now: datetime) -> dict[int, tuple[str, str]]:
    """Store the calls through repo.ingest; the ones it refused, {index: (code, detail)}."""
    if not calls:
        return {}
    # a refused value makes store() fall back to one row at a time (ingest runs in a savepoint here)
    return (await ingest_repo.store(conn, tenant_id, calls, settings=settings, shards=shards, now=now)).rejected
