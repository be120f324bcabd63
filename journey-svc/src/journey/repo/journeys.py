"""Journeys as stored: the editable draft, the status, and the immutable published versions."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from mcloud.journey.v1 import journey_pb2 as pb
from mcloud_common import paging
from mcloud_common.errors import FailedPrecondition, InvalidArgument, NotFound
from mcloud_common.ids import new_id, parse_uuid
from mcloud_common.timestamps import set_timestamp

STATUS = {"draft": pb.JOURNEY_STATUS_DRAFT, "active": pb.JOURNEY_STATUS_ACTIVE, "paused": pb.JOURNEY_STATUS_PAUSED,
          "archived": pb.JOURNEY_STATUS_ARCHIVED}
STATUS_NAMES = {v: k for k, v in STATUS.items()}
MAX_DEFINITION_BYTES = 512 * 1024

_COLUMNS = "id, name, description, status, draft, published_version, created_at, updated_at, published_at"


def journey_id(value: str) -> uuid.UUID:
    parsed = parse_uuid(value)
    if parsed is None:
        raise InvalidArgument("journey_id must be a UUID", code="invalid_journey_id", field="journey_id")
    return parsed


def message(row: asyncpg.Record, version: asyncpg.Record | None = None) -> pb.Journey:
    j = pb.Journey(id=str(row["id"]), name=row["name"], description=row["description"],
                   status=STATUS[row["status"]], draft_definition_json=row["draft"],
                   published_version=row["published_version"])
    if version is not None:
        j.definition_json, j.version = version["definition"], version["version"]
    set_timestamp(j.created_at, row["created_at"])
    set_timestamp(j.updated_at, row["updated_at"])
    if row["published_at"] is not None:
        set_timestamp(j.published_at, row["published_at"])
    return j


async def get(conn: asyncpg.Connection, tenant: str, jid: uuid.UUID, *, lock: bool = False) -> asyncpg.Record:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM journeys WHERE tenant_id = $1 AND id = $2"
                              + (" FOR UPDATE" if lock else ""), tenant, jid)
    if row is None:
        raise NotFound(f"journey {jid} not found", code="journey_not_found")
    return row


async def version(conn: asyncpg.Connection, tenant: str, jid: uuid.UUID, number: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT version, definition, entry_type, entry_event, published_at FROM journey_versions "
        "WHERE tenant_id = $1 AND journey_id = $2 AND version = $3", tenant, jid, number)


async def view(conn: asyncpg.Connection, tenant: str, row: asyncpg.Record, number: int = 0) -> pb.Journey:
    """The journey with the definition of version `number` (0: the latest published one)."""
    wanted = number or row["published_version"]
    published = await version(conn, tenant, row["id"], wanted) if wanted else None
    if number and published is None:
        raise NotFound(f"journey {row['id']} has no version {number}", code="version_not_found")
    out = message(row, published)
    latest = published if wanted == row["published_version"] else await version(
        conn, tenant, row["id"], row["published_version"])
    out.has_unpublished_changes = latest is None or latest["definition"] != row["draft"]
    return out


def check_text(name: str, definition: str) -> None:
    if not name.strip():
        raise InvalidArgument("name is required", code="name_required", field="name")
    if len(name) > 200:
        raise InvalidArgument("name: at most 200 characters", code="name_too_long", field="name")
    if len(definition.encode()) > MAX_DEFINITION_BYTES:
        raise InvalidArgument(f"definition_json: at most {MAX_DEFINITION_BYTES} bytes", code="definition_too_large",
                              field="definition_json")


async def save_draft(conn: asyncpg.Connection, tenant: str, request: pb.SaveJourneyDraftRequest,
                     now: datetime) -> asyncpg.Record:
    check_text(request.name, request.definition_json)
    if not request.journey_id:
        return await conn.fetchrow(
            f"""
            INSERT INTO journeys (tenant_id, id, name, description, draft, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {_COLUMNS}
            """, tenant, new_id(), request.name.strip(), request.description, request.definition_json, now)
    row = await get(conn, tenant, journey_id(request.journey_id), lock=True)
    if row["status"] == "archived":
        raise FailedPrecondition("an archived journey cannot be edited", code="journey_archived")
    return await conn.fetchrow(
        f"""
        UPDATE journeys SET name = $3, description = $4, draft = $5, updated_at = $6
        WHERE tenant_id = $1 AND id = $2 RETURNING {_COLUMNS}
        """, tenant, row["id"], request.name.strip(), request.description, request.definition_json, now)


JOURNEYS_CHANGED = "mcloud_journeys"


async def publish(conn: asyncpg.Connection, tenant: str, jid: uuid.UUID, *, entry_type: str, entry_event: str,
                  now: datetime) -> tuple[asyncpg.Record, int]:
    """Freeze the (valid) draft as the next version and make the journey active; an unchanged draft
    returns the current version."""
    row = await get(conn, tenant, jid, lock=True)
    if row["status"] == "archived":
        raise FailedPrecondition("an archived journey cannot be published", code="journey_archived")
    current = await version(conn, tenant, jid, row["published_version"]) if row["published_version"] else None
    if current is not None and current["definition"] == row["draft"]:
        if row["status"] == "draft":
            row = await set_status(conn, tenant, jid, "active", now)
        return row, row["published_version"]
    number = row["published_version"] + 1
    await conn.execute(
        "INSERT INTO journey_versions (tenant_id, journey_id, version, definition, entry_type, entry_event, "
        "published_at) VALUES ($1, $2, $3, $4, $5, $6, $7)", tenant, jid, number, row["draft"], entry_type,
        entry_event, now)
    row = await conn.fetchrow(
        f"""
        UPDATE journeys SET published_version = $3, published_at = $4, updated_at = $4,
            status = CASE WHEN status = 'paused' THEN 'paused' ELSE 'active' END
        WHERE tenant_id = $1 AND id = $2 RETURNING {_COLUMNS}
        """, tenant, jid, number, now)
    await changed(conn, tenant)
    return row, number


TRANSITIONS = {"pause": ({"active"}, "paused"), "resume": ({"paused"}, "active"),
               "archive": ({"draft", "active", "paused"}, "archived")}


async def changed(conn: asyncpg.Connection, tenant: str) -> None:
    """Tell every journey process (on commit) that a tenant's live journeys changed, so their event
    consumers re-read the triggers at once rather than at their next periodic refresh."""
    await conn.execute("SELECT pg_notify($1, $2)", JOURNEYS_CHANGED, str(tenant))


async def set_status(conn: asyncpg.Connection, tenant: str, jid: uuid.UUID, status: str,
                     now: datetime) -> asyncpg.Record:
    await changed(conn, tenant)
    return await conn.fetchrow(
        f"UPDATE journeys SET status = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2 RETURNING {_COLUMNS}",
        tenant, jid, status, now)


async def transition(conn: asyncpg.Connection, tenant: str, jid: uuid.UUID, action: str,
                     now: datetime) -> asyncpg.Record:
    """pause / resume / archive; the same request again is a no-op; FAILED_PRECONDITION otherwise."""
    allowed, target = TRANSITIONS[action]
    row = await get(conn, tenant, jid, lock=True)
    if row["status"] == target:
        return row
    if row["status"] not in allowed:
        raise FailedPrecondition(f"a {row['status']} journey cannot be {target}", code="invalid_transition",
                                 current=row["status"], target=target)
    return await set_status(conn, tenant, jid, target, now)




async def page(conn: asyncpg.Connection, tenant: str, statuses: list[str], size: int, token: str
               ) -> tuple[list[pb.Journey], str]:
    size = paging.page_size(size)
    at, last = paging.after(token)
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM journeys
        WHERE tenant_id = $1 AND (cardinality($2::text[]) = 0 OR status = ANY($2::text[]))
          AND ($3::timestamptz IS NULL OR (updated_at, id) < ($3, $4))
        ORDER BY updated_at DESC, id DESC LIMIT $5
        """, tenant, statuses, at, last, size + 1)
    rows, token = paging.cut(rows, size, "updated_at")
    out = []
    for r in rows:
        j = message(r)
        j.ClearField("draft_definition_json")
        out.append(j)
    return out, token
