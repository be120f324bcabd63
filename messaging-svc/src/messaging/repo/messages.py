"""Messages: the history and the durable send queue in one table (asyncpg, set-based).

A queued row is due at `due_at`. A sender claims due rows by pushing their `due_at` past a lease
(FOR UPDATE SKIP LOCKED, so workers never share a row) and counting an attempt; whatever happens to
the sender afterwards, an unfinished row simply comes due again when the lease ends. The unique
`(tenant_id, idempotency_key)` is what makes a retried send one message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from mcloud.events.v1 import messaging_events_pb2 as ev
from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.errors import NotFound
from mcloud_common.ids import new_id
from mcloud_common.paging import after, cut, page_size
from mcloud_common.timestamps import set_timestamp
from messaging.domain.names import BLOCK_ENUM, CHANNEL_ENUM, STATUS_ENUM
from messaging.repo.events import envelope, message_ref, publish


@dataclass(frozen=True, slots=True)
class NewMessage:
    """One accepted send, before it is stored."""

    profile_id: str
    requested_channel: str  # a channel name or "best"
    template_id: str
    template_version: int
    idempotency_key: str
    locale: str = ""
    variables: Mapping[str, Any] = field(default_factory=dict)
    transactional: bool = False
    quiet_hours_behavior: str = "hold"
    scheduled_at: datetime | None = None
    journey_id: str = ""
    journey_version: int = 0
    enrollment_id: str = ""
    step_id: str = ""
    campaign_id: str | None = None
    to_override: str = ""
    test: bool = False


_INSERT = """
    INSERT INTO messages (tenant_id, id, profile_id, requested_channel, template_id, template_version, locale,
                          variables, status, transactional, quiet_hours_behavior, idempotency_key, journey_id,
                          journey_version, enrollment_id, step_id, campaign_id, to_override, test, scheduled_at,
                          due_at, queued_at)
    SELECT $1, x.id, x.profile_id, x.requested_channel, x.template_id, x.template_version, x.locale, x.variables,
           'queued', x.transactional, x.quiet, x.key, x.journey_id, x.journey_version, x.enrollment_id, x.step_id,
           x.campaign_id, x.to_override, x.test, x.scheduled_at, coalesce(x.scheduled_at, $2), $2
    FROM unnest($3::uuid[], $4::uuid[], $5::text[], $6::uuid[], $7::int[], $8::text[], $9::jsonb[], $10::bool[],
                $11::text[], $12::text[], $13::text[], $14::int[], $15::text[], $16::text[], $17::uuid[], $18::text[],
                $19::bool[], $20::timestamptz[])
         AS x(id, profile_id, requested_channel, template_id, template_version, locale, variables, transactional,
              quiet, key, journey_id, journey_version, enrollment_id, step_id, campaign_id, to_override, test,
              scheduled_at)
    ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
    RETURNING *
"""


async def enqueue(conn: asyncpg.Connection, tenant_id: str, items: Sequence[NewMessage], *, now: datetime,
                  shards: int) -> list[asyncpg.Record]:
    """Store `items` as queued messages in one statement and emit message.queued for the new ones; a key
    seen before returns the message it made (never a second one). Rows come back in `items` order."""
    if not items:
        return []
    ids = [new_id() for _ in items]
    cols = list(zip(*[
        (i, m.profile_id, m.requested_channel, m.template_id, m.template_version, m.locale,
         orjson.dumps(dict(m.variables)).decode(), m.transactional, m.quiet_hours_behavior, m.idempotency_key,
         m.journey_id, m.journey_version, m.enrollment_id, m.step_id, m.campaign_id, m.to_override, m.test,
         m.scheduled_at)
        for i, m in zip(ids, items, strict=True)], strict=True))
    async with conn.transaction():
        inserted = await conn.fetch(_INSERT, tenant_id, now, *[list(c) for c in cols])
        by_key = {r["idempotency_key"]: r for r in inserted}
        missing = [m.idempotency_key for m in items if m.idempotency_key not in by_key]
        if missing:
            for r in await conn.fetch("SELECT * FROM messages WHERE tenant_id = $1 AND idempotency_key = ANY($2)",
                                      tenant_id, missing):
                by_key[r["idempotency_key"]] = r
        events = []
        for r in inserted:
            payload = ev.MessageQueued(message=message_ref(r))
            if r["scheduled_at"] is not None:
                set_timestamp(payload.send_at, r["scheduled_at"])
            events.append(envelope(tenant_id, "message.queued", str(r["profile_id"]), payload, at=now))
        await publish(conn, events, shards)
    return [by_key[m.idempotency_key] for m in items]


_CLAIM = """
    UPDATE messages m SET due_at = $2::timestamptz + make_interval(secs => $3), attempts = m.attempts + 1,
                          lease_until = $2::timestamptz + make_interval(secs => $3)
    FROM (SELECT tenant_id, id FROM messages
          WHERE status = 'queued' AND due_at <= $2
          ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
    WHERE m.tenant_id = due.tenant_id AND m.id = due.id
    RETURNING m.*
"""


async def claim(conn: asyncpg.Connection, *, now: datetime, limit: int, lease_seconds: float) -> list[asyncpg.Record]:
    """Take up to `limit` due messages for this sender until `now + lease_seconds`."""
    return await conn.fetch(_CLAIM, limit, now, lease_seconds)


async def get(conn: asyncpg.Connection, tenant_id: str, message_id: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM messages WHERE tenant_id = $1 AND id = $2", tenant_id, message_id)
    if row is None:
        raise NotFound(f"message {message_id} not found", code="message_not_found")
    return row


async def history(conn: asyncpg.Connection, tenant_id: str, *, profile_id: str = "", campaign_id: str = "",
                  journey_id: str = "", size: int = 0, token: str = "") -> tuple[Sequence[asyncpg.Record], str]:
    """Messages newest first, filtered by profile, campaign and/or journey (each uses its own index)."""
    size = page_size(size)
    at, last = after(token)
    where, args = ["tenant_id = $1"], [tenant_id]
    for column, value, cast in (("profile_id", profile_id, "uuid"), ("campaign_id", campaign_id, "uuid"),
                                ("journey_id", journey_id, "text")):
        if value:
            args.append(value)
            where.append(f"{column} = ${len(args)}::{cast}")
    if at is not None:
        args += [at, last]
        where.append(f"(queued_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(size + 1)
    rows = await conn.fetch(f"SELECT * FROM messages WHERE {' AND '.join(where)} "
                            f"ORDER BY queued_at DESC, id DESC LIMIT ${len(args)}", *args)
    return cut(rows, size, "queued_at")


def message_pb(row: Mapping[str, Any]) -> pb.Message:
    """A `messages` row as the API's Message."""
    channel = row.get("channel") or row.get("requested_channel") or ""
    message = pb.Message(
        id=str(row["id"]), profile_id=str(row["profile_id"]), channel=CHANNEL_ENUM.get(channel, 0),
        template_id=str(row["template_id"]), template_version=row.get("template_version") or 0,
        locale=row.get("locale") or "", status=STATUS_ENUM.get(row["status"], 0),
        block_reason=BLOCK_ENUM.get(row.get("block_reason") or "", 0), block_detail=row.get("block_detail") or "",
        transactional=bool(row.get("transactional")),
        attribution=pb.Attribution(
            journey_id=row.get("journey_id") or "", journey_version=row.get("journey_version") or 0,
            enrollment_id=row.get("enrollment_id") or "", step_id=row.get("step_id") or "",
            campaign_id=str(row["campaign_id"]) if row.get("campaign_id") else ""),
        idempotency_key=row.get("idempotency_key") or "", attempts=row.get("attempts") or 0,
        provider=row.get("provider") or "", provider_message_id=row.get("provider_message_id") or "",
        error=row.get("error") or "")
    for name in ("scheduled_at", "queued_at", "sent_at", "delivered_at", "opened_at", "clicked_at", "ended_at"):
        if row.get(name) is not None:
            set_timestamp(getattr(message, name), row[name])
    return message


def retry_delay(attempt: int, base_seconds: float, retry_after: float | None = None) -> timedelta:
    """Exponential backoff (base, 2x base, 4x base ...) capped at an hour; a provider's Retry-After wins
    when longer."""
    delay = min(base_seconds * 2 ** max(attempt - 1, 0), 3600.0)
    return timedelta(seconds=max(delay, retry_after or 0.0))
