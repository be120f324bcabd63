"""Consent per channel and purpose: the latest state (`consents`) and every change (`consent_log`).

The change with the latest `at` wins: one that arrives after a newer one (a delayed import, a
retried webhook) is logged but does not override it. Repeating the current state with the same
source and time (a retry) records nothing. A change of the effective state publishes
consent.changed in the caller's transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from identity.repo.events import envelope
from identity.repo.segments import mark_dirty
from mcloud.events.v1 import identity_events_pb2
from mcloud_common.bus import enqueue
from mcloud_common.errors import InvalidArgument

# "all" is every channel at once (the word messaging uses for an unsubscribe from everything).
CHANNELS = ("email", "sms", "push", "in_app", "webhook", "whatsapp", "wechat", "all")
STATES = ("granted", "denied", "withdrawn")
DEFAULT_PURPOSE = "marketing"
_PURPOSE = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_SOURCE = 64


@dataclass(frozen=True)
class ConsentRecord:
    channel: str
    purpose: str
    state: str
    source: str
    at: datetime


@dataclass(frozen=True)
class ConsentOutcome:
    state: str  # effective state after the call
    changed: bool  # the effective state changed (consent.changed was published)


def check(channel: str, purpose: str, state: str, source: str) -> None:
    """InvalidArgument (stable code) when a consent change is malformed."""
    if not channel:
        raise InvalidArgument("channel is required", code="missing_channel")
    if channel not in CHANNELS:
        raise InvalidArgument(f"channel must be one of {', '.join(CHANNELS)}", code="invalid_channel")
    if not _PURPOSE.fullmatch(purpose):
        raise InvalidArgument("purpose: lowercase letters, digits and _, at most 64", code="invalid_purpose")
    if state not in STATES:
        raise InvalidArgument(f"state must be one of {', '.join(STATES)}", code="missing_state")
    if not source or len(source) > MAX_SOURCE or "\x00" in source:
        raise InvalidArgument(f"source must be 1 to {MAX_SOURCE} characters", code="invalid_source")


async def record(conn: asyncpg.Connection, tenant_id: str, profile_id: str, change: ConsentRecord, *,
                 shards: int) -> ConsentOutcome:
    """Apply one consent change to a (surviving) profile. Call inside a transaction."""
    # one writer per (profile, channel, purpose): the compare-and-set below must not interleave
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                       f"consent\x1f{tenant_id}\x1f{profile_id}\x1f{change.channel}\x1f{change.purpose}")
    current = await conn.fetchrow(
        "SELECT state, source, at FROM consents WHERE tenant_id = $1 AND profile_id = $2 AND channel = $3"
        " AND purpose = $4",
        tenant_id, profile_id, change.channel, change.purpose,
    )
    if current is not None and (current["state"], current["source"], current["at"]) == (
            change.state, change.source, change.at):
        return ConsentOutcome(change.state, changed=False)
    await conn.execute(
        "INSERT INTO consent_log (tenant_id, profile_id, channel, purpose, state, source, at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        tenant_id, profile_id, change.channel, change.purpose, change.state, change.source, change.at,
    )
    if current is not None and current["at"] > change.at:
        return ConsentOutcome(current["state"], changed=False)
    await conn.execute(
        """
        INSERT INTO consents (tenant_id, profile_id, channel, purpose, state, source, at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (tenant_id, profile_id, channel, purpose)
        DO UPDATE SET state = excluded.state, source = excluded.source, at = excluded.at
        """,
        tenant_id, profile_id, change.channel, change.purpose, change.state, change.source, change.at,
    )
    changed = current is None or current["state"] != change.state
    if changed:
        event = envelope(tenant_id, "consent.changed", profile_id, identity_events_pb2.ConsentChanged(
            profile_id=profile_id, channel=change.channel, purpose=change.purpose, state=change.state),
            at=change.at)
        await enqueue(conn, [event], producer="identity", shards=shards)
        await mark_dirty(conn, tenant_id, [profile_id])
    return ConsentOutcome(change.state, changed=changed)


async def list_consents(conn: asyncpg.Connection, tenant_id: str, profile_id: str) -> list[ConsentRecord]:
    rows = await conn.fetch(
        "SELECT channel, purpose, state, source, at FROM consents WHERE tenant_id = $1 AND profile_id = $2"
        " ORDER BY channel, purpose",
        tenant_id, profile_id,
    )
    return [ConsentRecord(r["channel"], r["purpose"], r["state"], r["source"], r["at"]) for r in rows]


async def history(conn: asyncpg.Connection, tenant_id: str, profile_id: str) -> list[ConsentRecord]:
    """Every recorded change, oldest first (for export and audits)."""
    rows = await conn.fetch(
        "SELECT channel, purpose, state, source, at FROM consent_log WHERE tenant_id = $1 AND profile_id = $2"
        " ORDER BY id",
        tenant_id, profile_id,
    )
    return [ConsentRecord(r["channel"], r["purpose"], r["state"], r["source"], r["at"]) for r in rows]
