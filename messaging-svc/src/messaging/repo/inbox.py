"""The in-app inbox: one entry per in-app message (idempotent on message_id), listed newest first;
expired entries are hidden. The first read of an entry counts as an open of its message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common import paging
from mcloud_common.errors import InvalidArgument
from mcloud_common.ids import new_id, parse_uuid
from mcloud_common.timestamps import set_timestamp
from messaging.repo import tracking as tracking_repo

MAX_IDS = 500
_VISIBLE = "tenant_id = $1 AND profile_id = $2 AND (expires_at IS NULL OR expires_at > $3)"


@dataclass(frozen=True, slots=True)
class Marked:
    marked: int
    unread_count: int


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value or {}).decode()


def message(row: Mapping[str, Any]) -> pb.InboxMessage:
    m = pb.InboxMessage(id=str(row["id"]), message_id=str(row["message_id"]), title=row["title"], body=row["body"],
                        image_url=row["image_url"], link_url=row["link_url"], data_json=_json_text(row["data"]),
                        read=row["read_at"] is not None)
    set_timestamp(m.created_at, row["created_at"])
    if row["read_at"] is not None:
        set_timestamp(m.read_at, row["read_at"])
    if row["expires_at"] is not None:
        set_timestamp(m.expires_at, row["expires_at"])
    return m


async def add(conn: asyncpg.Connection, tenant: str, *, message_id: str, profile_id: str, title: str = "",
              body: str = "", image_url: str = "", link_url: str = "", data: Mapping[str, Any] | None = None,
              now: datetime, expires_at: datetime | None = None) -> asyncpg.Record:
    """Put a message in the person's inbox; a second add of the same message returns the first entry."""
    row = await conn.fetchrow(
        """
        INSERT INTO inbox (tenant_id, id, profile_id, message_id, title, body, image_url, link_url, data, created_at,
                           expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (tenant_id, message_id) DO NOTHING RETURNING *
        """, tenant, new_id(), profile_id, message_id, title, body, image_url, link_url, dict(data or {}), now,
        expires_at)
    if row is None:
        row = await conn.fetchrow("SELECT * FROM inbox WHERE tenant_id = $1 AND message_id = $2", tenant, message_id)
    return row


async def unread_count(conn: asyncpg.Connection, tenant: str, profile_id: str, now: datetime) -> int:
    return await conn.fetchval(f"SELECT count(*) FROM inbox WHERE {_VISIBLE} AND read_at IS NULL",
                               tenant, profile_id, now)


async def list_page(conn: asyncpg.Connection, tenant: str, profile_id: str, *, unread_only: bool, page_size: int,
                    page_token: str, now: datetime) -> tuple[list[pb.InboxMessage], int, str]:
    """One page of the inbox, newest first; the unread total; the next page token ("" when last)."""
    size = paging.page_size(page_size)
    at, last = paging.after(page_token)
    rows = await conn.fetch(
        f"""
        SELECT * FROM inbox WHERE {_VISIBLE} AND (NOT $4 OR read_at IS NULL)
          AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6))
        ORDER BY created_at DESC, id DESC LIMIT $7
        """, tenant, profile_id, now, unread_only, at, last, size + 1)
    rows, token = paging.cut(rows, size, "created_at")
    return [message(r) for r in rows], await unread_count(conn, tenant, profile_id, now), token


async def mark_read(conn: asyncpg.Connection, tenant: str, profile_id: str, *, ids: Sequence[str] = (),
                    all_: bool = False, now: datetime, shards: int) -> Marked:
    """Mark some (or all) of the person's visible entries read; each first read records an open of its
    message (tracking.record, once per entry). Unknown ids are ignored."""
    if not all_:
        if len(ids) > MAX_IDS:
            raise InvalidArgument(f"at most {MAX_IDS} ids per call", code="too_many_ids", field="inbox_message_ids")
        for i, value in enumerate(ids):
            if parse_uuid(value) is None:
                raise InvalidArgument("inbox message ids must be UUIDs", code="invalid_inbox_message_id",
                                      field=f"inbox_message_ids[{i}]")
    async with conn.transaction():
        rows = await conn.fetch(
            f"""
            UPDATE inbox SET read_at = $3 WHERE {_VISIBLE} AND read_at IS NULL AND ($4 OR id = ANY($5::uuid[]))
            RETURNING id, message_id
            """, tenant, profile_id, now, all_, [] if all_ else list(ids))
        for r in rows:
            await tracking_repo.record(conn, tenant, message_id=str(r["message_id"]), kind="opened",
                                       provider_event_id=f"inbox-read:{r['id']}", occurred_at=now, shards=shards)
        return Marked(len(rows), await unread_count(conn, tenant, profile_id, now))


async def erase_profile(conn: asyncpg.Connection, tenant: str, profile_id: str) -> None:
    await conn.execute("DELETE FROM inbox WHERE tenant_id = $1 AND profile_id = $2", tenant, profile_id)
