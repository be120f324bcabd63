"""Programs as stored (the Program message as JSON in `spec`) and a per-process cache of them."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import asyncpg
from google.protobuf import json_format

from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.errors import InvalidArgument, NotFound
from mcloud_common.ids import new_id, parse_uuid
from mcloud_common.timestamps import set_timestamp

CACHE_SECONDS = 5.0


def from_row(row: asyncpg.Record) -> pb.Program:
    p = json_format.ParseDict(row["spec"], pb.Program(), ignore_unknown_fields=True)
    p.id = str(row["id"])
    set_timestamp(p.created_at, row["created_at"])
    set_timestamp(p.updated_at, row["updated_at"])
    return p


def _spec(program: pb.Program) -> dict:
    spec = pb.Program()
    spec.CopyFrom(program)
    for field in ("id", "created_at", "updated_at"):
        spec.ClearField(field)
    return json_format.MessageToDict(spec, preserving_proto_field_name=True)


async def save(conn: asyncpg.Connection, tenant: str, program: pb.Program, now: datetime) -> pb.Program:
    """Insert (empty id: a new id) or replace a validated program."""
    if program.id and parse_uuid(program.id) is None:
        raise InvalidArgument("program.id must be a UUID (or empty to create)", code="invalid_program_id",
                              field="program.id")
    pid = uuid.UUID(program.id) if program.id else new_id()
    row = await conn.fetchrow(
        """
        INSERT INTO programs (tenant_id, id, spec, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
        ON CONFLICT (tenant_id, id) DO UPDATE SET spec = EXCLUDED.spec, updated_at = EXCLUDED.updated_at
        RETURNING id, spec, created_at, updated_at
        """,
        tenant, pid, _spec(program), now,
    )
    return from_row(row)


async def load_all(conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> dict[str, pb.Program]:
    rows = await conn.fetch(
        "SELECT id, spec, created_at, updated_at FROM programs WHERE tenant_id = $1 ORDER BY created_at, id", tenant)
    return {str(r["id"]): from_row(r) for r in rows}


class ProgramCache:
    """The tenant's programs, re-read at most every CACHE_SECONDS (other replicas' edits show up
    within that) and at once after this process saves one."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, dict[str, pb.Program]]] = {}

    def forget(self, tenant: str) -> None:
        self._entries.pop(tenant, None)

    async def all(self, conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> dict[str, pb.Program]:
        hit = self._entries.get(tenant)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        programs = await load_all(conn, tenant)
        self._entries[tenant] = (time.monotonic(), programs)
        return programs

    async def get(self, conn: asyncpg.Connection | asyncpg.Pool, tenant: str, program_id: str) -> pb.Program:
        """The program `program_id`; an empty id means the tenant's only program."""
        programs = await self.all(conn, tenant)
        if not program_id:
            if len(programs) == 1:
                return next(iter(programs.values()))
            if not programs:
                raise NotFound("the tenant has no loyalty program", code="program_not_found")
            raise InvalidArgument("program_id is required: the tenant has several programs",
                                  code="program_id_required", field="program_id")
        if parse_uuid(program_id) is None:
            raise InvalidArgument("program_id must be a UUID", code="invalid_program_id", field="program_id")
        program = programs.get(program_id)
        if program is None:
            self.forget(tenant)  # maybe created by another replica a moment ago
            program = (await self.all(conn, tenant)).get(program_id)
        if program is None:
            raise NotFound(f"program {program_id} not found", code="program_not_found")
        return program
