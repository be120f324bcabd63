"""A person's messaging data across identity's merges and erasures.

merge: everything of `from` is folded into `into` (contact blanks filled, preferences with an opt-out
on either side winning, suppressions by profile, engagement summed, messages and inbox re-keyed).
erase: the person's preferences, inbox, engagement, messages and their events and profile suppressions
go; address suppressions stay (a bounce is about the address); the contact becomes a tombstone so any
later send is blocked as profile_erased."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import orjson

from messaging.domain.names import CHANNELS

_DENIED = frozenset({"denied", "withdrawn"})
_ADDRESS_COLUMNS = ("email", "phone", "webhook_url", "locale", "timezone")


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = orjson.loads(value)
    return dict(value) if isinstance(value, dict) else {}


async def _lock(conn: asyncpg.Connection, tenant: str, *profile_ids: str) -> None:
    for pid in sorted(profile_ids):  # the contacts writers' lock, in one order
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"contact|{tenant}|{pid}")


async def _merge_contacts(conn: asyncpg.Connection, tenant: str, from_pid: str, into_pid: str) -> None:
    rows = {str(r["profile_id"]): r for r in await conn.fetch(
        "SELECT * FROM contacts WHERE tenant_id = $1 AND profile_id = ANY($2::uuid[]) FOR UPDATE",
        tenant, [from_pid, into_pid])}
    src, dst = rows.get(from_pid), rows.get(into_pid)
    if src is None:
        return
    if dst is None:
        if not src["erased"]:
            await conn.execute("UPDATE contacts SET profile_id = $3 WHERE tenant_id = $1 AND profile_id = $2",
                               tenant, from_pid, into_pid)
        else:
            await conn.execute("DELETE FROM contacts WHERE tenant_id = $1 AND profile_id = $2", tenant, from_pid)
        return
    if not dst["erased"] and not src["erased"]:
        values = {c: dst[c] or src[c] for c in _ADDRESS_COLUMNS}
        tokens = list(dict.fromkeys([*dst["push_tokens"], *src["push_tokens"]]))[:10]
        traits = {**_json(src["traits"]), **_json(dst["traits"])}
        a, b = _json(dst["consent"]), _json(src["consent"])
        # an explicit denial on either side survives the merge; otherwise into's record, then from's
        consent = {ch: (b[ch] if b.get(ch) in _DENIED and a.get(ch) not in _DENIED else a.get(ch, b.get(ch)))
                   for ch in {*a, *b}}
        await conn.execute(
            """
            UPDATE contacts SET email = $3, phone = $4, webhook_url = $5, locale = $6, timezone = $7, push_tokens = $8,
                traits = $9, consent = $10, synced_at = LEAST(synced_at, $11)
            WHERE tenant_id = $1 AND profile_id = $2
            """, tenant, into_pid, values["email"], values["phone"], values["webhook_url"], values["locale"],
            values["timezone"], tokens, traits, consent, src["synced_at"])
    await conn.execute("DELETE FROM contacts WHERE tenant_id = $1 AND profile_id = $2", tenant, from_pid)


async def _merge_preferences(conn: asyncpg.Connection, tenant: str, from_pid: str, into_pid: str, now: datetime
                             ) -> None:
    rows = {str(r["profile_id"]): r for r in await conn.fetch(
        "SELECT * FROM preferences WHERE tenant_id = $1 AND profile_id = ANY($2::uuid[]) FOR UPDATE",
        tenant, [from_pid, into_pid])}
    src, dst = rows.get(from_pid), rows.get(into_pid)
    if src is None:
        return
    if dst is None:
        await conn.execute("UPDATE preferences SET profile_id = $3 WHERE tenant_id = $1 AND profile_id = $2",
                           tenant, from_pid, into_pid)
        return
    a, b = _json(dst["channels"]), _json(src["channels"])
    channels: dict[str, Any] = {}
    for name in [*CHANNELS, *sorted({*a, *b} - set(CHANNELS))]:
        mine, theirs = a.get(name), b.get(name)
        if mine is None and theirs is None:
            continue
        opted_out_there = theirs is not None and theirs.get("opted_in") is False
        if opted_out_there and (mine is None or mine.get("opted_in") is not False):
            channels[name] = theirs  # never re-subscribe someone by a merge
        else:
            channels[name] = mine if mine is not None else theirs
    quiet = dst if dst["quiet_enabled"] or not src["quiet_enabled"] else src
    await conn.execute(
        """
        UPDATE preferences SET channels = $3, locale = $4, timezone = $5, quiet_enabled = $6, quiet_start_minute = $7,
            quiet_end_minute = $8, preferred_channel = $9, updated_at = $10
        WHERE tenant_id = $1 AND profile_id = $2
        """, tenant, into_pid, channels, dst["locale"] or src["locale"], dst["timezone"] or src["timezone"],
        quiet["quiet_enabled"], quiet["quiet_start_minute"], quiet["quiet_end_minute"],
        dst["preferred_channel"] or src["preferred_channel"], now)
    await conn.execute("DELETE FROM preferences WHERE tenant_id = $1 AND profile_id = $2", tenant, from_pid)


async def merge(conn: asyncpg.Connection, tenant: str, from_pid: str, into_pid: str, now: datetime) -> None:
    """Fold `from_pid`'s messaging data into `into_pid` (profile.merged); replaying it changes nothing."""
    if from_pid == into_pid:
        return
    async with conn.transaction():
        await _lock(conn, tenant, from_pid, into_pid)
        await _merge_contacts(conn, tenant, from_pid, into_pid)
        await _merge_preferences(conn, tenant, from_pid, into_pid, now)
        # by-profile suppressions: into's own row for a channel wins, the rest move over
        await conn.execute(
            """
            DELETE FROM suppressions s WHERE s.tenant_id = $1 AND s.profile_id = $2 AND s.address = ''
              AND EXISTS (SELECT 1 FROM suppressions t WHERE t.tenant_id = $1 AND t.profile_id = $3
                          AND t.address = '' AND t.channel = s.channel)
            """, tenant, from_pid, into_pid)
        await conn.execute("UPDATE suppressions SET profile_id = $3 WHERE tenant_id = $1 AND profile_id = $2",
                           tenant, from_pid, into_pid)
        await conn.execute(
            """
            INSERT INTO engagement (tenant_id, profile_id, channel, hour_of_week, opens, clicks, last_at)
            SELECT tenant_id, $3, channel, hour_of_week, opens, clicks, last_at FROM engagement
            WHERE tenant_id = $1 AND profile_id = $2
            ON CONFLICT (tenant_id, profile_id, channel, hour_of_week) DO UPDATE SET
                opens = engagement.opens + excluded.opens, clicks = engagement.clicks + excluded.clicks,
                last_at = GREATEST(engagement.last_at, excluded.last_at)
            """, tenant, from_pid, into_pid)
        await conn.execute("DELETE FROM engagement WHERE tenant_id = $1 AND profile_id = $2", tenant, from_pid)
        await conn.execute("UPDATE messages SET profile_id = $3 WHERE tenant_id = $1 AND profile_id = $2",
                           tenant, from_pid, into_pid)
        await conn.execute("UPDATE inbox SET profile_id = $3 WHERE tenant_id = $1 AND profile_id = $2",
                           tenant, from_pid, into_pid)
        await conn.execute("UPDATE attributions SET profile_id = $3 WHERE tenant_id = $1 AND profile_id = $2",
                           tenant, from_pid, into_pid)


async def erase(conn: asyncpg.Connection, tenant: str, profile_id: str, now: datetime) -> None:
    """Delete the person's messaging data and leave a contact tombstone (profile.erased); idempotent."""
    async with conn.transaction():
        await _lock(conn, tenant, profile_id)
        await conn.execute("DELETE FROM preferences WHERE tenant_id = $1 AND profile_id = $2", tenant, profile_id)
        await conn.execute("DELETE FROM inbox WHERE tenant_id = $1 AND profile_id = $2", tenant, profile_id)
        await conn.execute("DELETE FROM engagement WHERE tenant_id = $1 AND profile_id = $2", tenant, profile_id)
        # queued ones are cancelled first (a sender holding one finds it gone), then the whole history goes
        await conn.execute(
            "UPDATE messages SET status = 'suppressed', block_reason = 'profile_erased', ended_at = $3, "
            "lease_until = NULL WHERE tenant_id = $1 AND profile_id = $2 AND status = 'queued'",
            tenant, profile_id, now)
        await conn.execute(
            """
            DELETE FROM message_events e USING messages m
            WHERE e.tenant_id = $1 AND m.tenant_id = $1 AND m.profile_id = $2 AND e.message_id = m.id
            """, tenant, profile_id)
        await conn.execute("DELETE FROM messages WHERE tenant_id = $1 AND profile_id = $2", tenant, profile_id)
        # attributed revenue stays in the channel's totals, no longer tied to the person
        await conn.execute("UPDATE attributions SET profile_id = NULL WHERE tenant_id = $1 AND profile_id = $2",
                           tenant, profile_id)
        await conn.execute("DELETE FROM suppressions WHERE tenant_id = $1 AND profile_id = $2 AND address = ''",
                           tenant, profile_id)
        await conn.execute("UPDATE suppressions SET profile_id = NULL WHERE tenant_id = $1 AND profile_id = $2",
                           tenant, profile_id)
        await conn.execute(
            """
            INSERT INTO contacts (tenant_id, profile_id, erased, synced_at) VALUES ($1, $2, true, $3)
            ON CONFLICT (tenant_id, profile_id) DO UPDATE SET email = NULL, phone = NULL, push_tokens = '{}',
                webhook_url = NULL, locale = NULL, timezone = NULL, traits = '{}', consent = '{}', erased = true,
                synced_at = $3
            """, tenant, profile_id, now)
