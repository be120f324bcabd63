"""Tracking facts about sent messages: the ONE place that moves a message's status by what happened
after sending (delivered, opened, clicked, bounced, failed, complaints, unsubscribes), plus engagement
(opens/clicks by local hour of week) and the reads GetBestSendTime needs.

Rules of `record`:
- each fact is stored once in message_events, deduplicated on (tenant, provider_event_id); a repeat
  changes nothing and answers duplicate=True;
- the status only moves forward by STATUS_RANK (sent < delivered < opened < clicked); a click implies an
  open and an open implies delivery; the first of each sets delivered_at / opened_at / clicked_at;
- bounced / failed end the message (status, ended_at, error) unless it was already opened or clicked
  or has ended otherwise;
- a hard bounce and a complaint suppress the message's channel + address (reasons hard_bounce and
  complaint); an unsubscribe suppresses it with reason unsubscribe and emits message.unsubscribed;
- events: message.delivered (first delivery), message.opened (first open only), message.clicked (every
  click), message.bounced / message.failed (when they end the message), message.unsubscribed
  (unsubscribe, and complaint with source "complaint");
- engagement: the first open and the first click of each message count once each, in the hour of
  the week of the person's zone (preferences.timezone, then contacts.timezone, else UTC).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from mcloud.events.v1 import messaging_events_pb2 as ev
from mcloud_common.ids import parse_uuid
from messaging.domain import best_time
from messaging.domain.names import STATUS_RANK, TERMINAL
from messaging.repo.events import envelope, message_ref, publish
from messaging.repo.messages import message_pb  # noqa: F401  (re-exported: the tracking API answers with it)

KINDS = ("delivered", "opened", "clicked", "bounced", "failed", "complained", "unsubscribed")


async def _find(conn: asyncpg.Connection, tenant: str, message_id: str, provider_message_id: str
                ) -> asyncpg.Record | None:
    if message_id and parse_uuid(message_id) is not None:
        return await conn.fetchrow("SELECT * FROM messages WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
                                   tenant, message_id)
    if provider_message_id:
        bare = provider_message_id.strip().strip("<>")
        if bare:
            return await conn.fetchrow(
                "SELECT * FROM messages WHERE tenant_id = $1 AND provider_message_id = ANY($2::text[]) "
                "AND provider_message_id <> '' ORDER BY queued_at DESC LIMIT 1 FOR UPDATE",
                tenant, [bare, f"<{bare}>"])
    return None


async def get_message(conn: asyncpg.Connection, tenant: str, message_id: str) -> asyncpg.Record | None:
    if parse_uuid(message_id) is None:
        return None
    return await conn.fetchrow("SELECT * FROM messages WHERE tenant_id = $1 AND id = $2", tenant, message_id)


async def zone_of_profile(conn: asyncpg.Connection, tenant: str, profile_id: str) -> str:
    """The person's IANA zone name: preferences.timezone, then contacts.timezone, else "UTC"."""
    row = await conn.fetchrow(
        "SELECT (SELECT timezone FROM preferences WHERE tenant_id = $1 AND profile_id = $2) AS pref, "
        "(SELECT timezone FROM contacts WHERE tenant_id = $1 AND profile_id = $2) AS contact", tenant, profile_id)
    return best_time.zone_named(row["pref"], row["contact"]).key


async def _suppress(conn: asyncpg.Connection, tenant: str, row: Mapping[str, Any], reason: str, detail: str,
                    now: datetime) -> None:
    channel = row.get("channel") or row.get("requested_channel")
    if channel not in ("email", "sms", "push", "in_app", "webhook"):
        return
    await conn.execute(
        "INSERT INTO suppressions (tenant_id, id, channel, address, profile_id, reason, detail, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        tenant, uuid.uuid4(), channel, row.get("address") or "", row["profile_id"], reason, detail[:500], now)


async def _engage(conn: asyncpg.Connection, tenant: str, row: Mapping[str, Any], *, opens: int, clicks: int,
                  at: datetime) -> None:
    profile_id = str(row["profile_id"])
    zone = best_time.zone_named(await zone_of_profile(conn, tenant, profile_id))
    await conn.execute(
        "INSERT INTO engagement (tenant_id, profile_id, channel, hour_of_week, opens, clicks, last_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, profile_id, channel, hour_of_week) DO UPDATE "
        "SET opens = engagement.opens + EXCLUDED.opens, clicks = engagement.clicks + EXCLUDED.clicks, "
        "last_at = GREATEST(engagement.last_at, EXCLUDED.last_at)",
        tenant, profile_id, row.get("channel") or row.get("requested_channel") or "email",
        best_time.hour_of_week(at, zone), opens, clicks, at)


def _link_ids(url: str) -> tuple[str, str]:
    try:
        query = parse_qs(urlsplit(url).query)
    except ValueError:
        return "", ""
    return (query.get("item_id") or [""])[0][:200], (query.get("rec_id") or [""])[0][:200]


async def record(conn: asyncpg.Connection, tenant: str, *, message_id: str = "", kind: str, provider_event_id: str,
                 occurred_at: datetime, url: str = "", hard_bounce: bool = False, detail: str = "",
                 user_agent: str = "", shards: int, provider_message_id: str = ""
                 ) -> tuple[asyncpg.Record | None, bool]:
    """Apply one tracking fact (see the module docstring). The message is found by our `message_id`,
    else by the provider's id; an unknown message answers (None, False). Returns the message row
    after the fact and whether the fact was a duplicate."""
    if kind not in KINDS:
        raise ValueError(f"unknown tracking kind {kind!r}")
    async with conn.transaction():
        row = await _find(conn, tenant, message_id, provider_message_id)
        if row is None:
            return None, False
        inserted = await conn.fetchval(
            "INSERT INTO message_events (tenant_id, provider_event_id, message_id, kind, occurred_at, url, detail) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, provider_event_id) DO NOTHING RETURNING true",
            tenant, provider_event_id[:500], row["id"], kind, occurred_at, url[:4000], detail[:2000])
        if not inserted:
            return row, True

        status = row["status"]
        profile_id = str(row["profile_id"])
        ended = status in TERMINAL
        changes: dict[str, Any] = {}
        events = []
        ref = message_ref(row)

        def advance(to: str) -> None:
            current = changes.get("status", status)
            if not ended and STATUS_RANK.get(current, -1) < STATUS_RANK[to] and current in STATUS_RANK:
                changes["status"] = to

        if kind in ("delivered", "opened", "clicked"):
            first_delivery = row["delivered_at"] is None
            if first_delivery:
                changes["delivered_at"] = occurred_at
            advance("delivered")
            if kind == "delivered" and first_delivery and not ended:
                events.append(envelope(tenant, "message.delivered", profile_id, ev.MessageDelivered(message=ref),
                                       at=occurred_at))
        if kind in ("opened", "clicked"):
            advance("opened")
            if row["opened_at"] is None:  # a click implies an open (images blocked)
                changes["opened_at"] = occurred_at
                events.append(envelope(tenant, "message.opened", profile_id,
                                       ev.MessageOpened(message=ref, user_agent=user_agent[:500]), at=occurred_at))
                if kind == "opened":
                    await _engage(conn, tenant, row, opens=1, clicks=0, at=occurred_at)
        if kind == "clicked":
            advance("clicked")
            item_id, rec_id = _link_ids(url)
            events.append(envelope(tenant, "message.clicked", profile_id,
                                   ev.MessageClicked(message=ref, url=url[:4000], item_id=item_id,
                                                     recommendation_id=rec_id), at=occurred_at))
            if row["clicked_at"] is None:
                changes["clicked_at"] = occurred_at
                await _engage(conn, tenant, row, opens=0, clicks=1, at=occurred_at)
        if kind in ("bounced", "failed"):
            if not ended and status not in ("opened", "clicked"):
                changes.update(status=kind, ended_at=occurred_at, error=detail[:2000])
                if kind == "bounced":
                    events.append(envelope(tenant, "message.bounced", profile_id,
                                           ev.MessageBounced(message=ref, hard_bounce=hard_bounce,
                                                             detail=detail[:2000]), at=occurred_at))
                else:
                    events.append(envelope(tenant, "message.failed", profile_id,
                                           ev.MessageFailed(message=ref, error=detail[:2000],
                                                            attempts=row["attempts"] or 0), at=occurred_at))
            if kind == "bounced" and hard_bounce:
                await _suppress(conn, tenant, row, "hard_bounce", detail, occurred_at)
        if kind in ("complained", "unsubscribed"):
            await _suppress(conn, tenant, row, "complaint" if kind == "complained" else "unsubscribe", detail,
                            occurred_at)
            events.append(envelope(tenant, "message.unsubscribed", profile_id,
                                   ev.MessageUnsubscribed(message=ref, profile_id=profile_id, channel=ref.channel,
                                                          source="complaint" if kind == "complained" else "link"),
                                   at=occurred_at))

        if changes:
            names = list(changes)
            sets = ", ".join(f"{name} = ${i + 3}" for i, name in enumerate(names))
            row = await conn.fetchrow(f"UPDATE messages SET {sets} WHERE tenant_id = $1 AND id = $2 RETURNING *",
                                      tenant, row["id"], *(changes[n] for n in names))
        await publish(conn, events, shards)
        return row, False


# ---- reads for the API -------------------------------------------------------------------------------


async def email_secrets(conn: asyncpg.Connection, tenant: str) -> Mapping[str, Any]:
    """The email channel config's secrets (webhook keys live there); {} when not configured."""
    value = await conn.fetchval("SELECT secrets FROM channel_configs WHERE tenant_id = $1 AND channel = 'email'",
                                tenant)
    if isinstance(value, str):  # a connection without the jsonb codec
        import orjson

        value = orjson.loads(value)
    return value if isinstance(value, dict) else {}


async def engagement(conn: asyncpg.Connection, tenant: str, profile_id: str, channel: str | None = None
                     ) -> tuple[dict[int, tuple[int, int]], dict[str, int]]:
    """A person's engagement: by hour of week (opens, clicks) on `channel` (None = all) and per channel
    (opens + clicks)."""
    rows = await conn.fetch("SELECT channel, hour_of_week, opens, clicks FROM engagement "
                            "WHERE tenant_id = $1 AND profile_id = $2", tenant, profile_id)
    by_hour: dict[int, tuple[int, int]] = {}
    by_channel: dict[str, int] = {}
    for r in rows:
        by_channel[r["channel"]] = by_channel.get(r["channel"], 0) + r["opens"] + r["clicks"]
        if channel is None or r["channel"] == channel:
            opens, clicks = by_hour.get(r["hour_of_week"], (0, 0))
            by_hour[r["hour_of_week"]] = (opens + r["opens"], clicks + r["clicks"])
    return by_hour, by_channel


async def tenant_engagement(conn: asyncpg.Connection, tenant: str, channel: str | None = None
                            ) -> dict[int, tuple[int, int]]:
    """Everyone's engagement in the tenant by (local) hour of week."""
    rows = await conn.fetch(
        "SELECT hour_of_week, sum(opens)::bigint AS opens, sum(clicks)::bigint AS clicks FROM engagement "
        "WHERE tenant_id = $1 AND ($2::text IS NULL OR channel = $2) GROUP BY hour_of_week", tenant, channel)
    return {r["hour_of_week"]: (int(r["opens"]), int(r["clicks"])) for r in rows}


async def person_settings(conn: asyncpg.Connection, tenant: str, profile_id: str) -> tuple[str, str | None]:
    """(zone name, explicit preferred channel or None)."""
    preferred = await conn.fetchval(
        "SELECT preferred_channel FROM preferences WHERE tenant_id = $1 AND profile_id = $2", tenant, profile_id)
    return await zone_of_profile(conn, tenant, profile_id), (preferred or None)

