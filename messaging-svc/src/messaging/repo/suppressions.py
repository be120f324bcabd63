"""Suppressions: addresses and profiles that may not receive messages on a channel ('all' = every
channel). One row per (channel, address) (case-insensitive) and per (channel, profile): adding an
existing one returns it unchanged, so Suppress and hard-bounce handling are idempotent by content.
An address row may name the profile it was found on; it still matches by address only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.errors import InvalidArgument
from mcloud_common.ids import new_id, parse_uuid
from mcloud_common.timestamps import set_timestamp
from messaging.domain.names import CHANNEL_ENUM, SUPPRESSION_REASON_ENUM
from messaging.repo.contacts import normalize_address

REASONS = frozenset(SUPPRESSION_REASON_ENUM)
MAX_ADDRESS = 1024


async def suppressed(conn: asyncpg.Connection, tenant: str, items: Sequence[tuple[str, str, str]]
                     ) -> dict[tuple[str, str, str], str]:
    """For (profile_id, channel, address) items: the suppression reason of those suppressed on their
    channel or on 'all', by address (case-insensitively) or by profile. Unsuppressed items are absent."""
    if not items:
        return {}
    addresses = sorted({a.lower() for _, _, a in items if a})
    profiles = sorted({p for p, _, _ in items if p and parse_uuid(p) is not None})
    channels = sorted({c for _, c, _ in items} | {"all"})
    rows = await conn.fetch(
        """
        SELECT channel, lower(address) AS address, profile_id::text AS profile_id, reason FROM suppressions
        WHERE tenant_id = $1 AND channel = ANY($2::text[])
          AND ((address <> '' AND lower(address) = ANY($3::text[]))
               OR (address = '' AND profile_id = ANY($4::uuid[])))
        ORDER BY created_at
        """, tenant, channels, addresses, profiles)
    by_address: dict[tuple[str, str], str] = {}
    by_profile: dict[tuple[str, str], str] = {}
    for r in rows:
        if r["address"]:
            by_address.setdefault((r["channel"], r["address"]), r["reason"])
        else:
            by_profile.setdefault((r["channel"], r["profile_id"]), r["reason"])
    out: dict[tuple[str, str, str], str] = {}
    for item in items:
        profile_id, channel, address = item
        for ch in (channel, "all"):
            reason = (by_address.get((ch, address.lower())) if address else None) or by_profile.get((ch, profile_id))
            if reason is not None:
                out[item] = reason
                break
    return out


async def add_suppression(conn: asyncpg.Connection, tenant: str, *, channel: str, address: str = "",
                          profile_id: str | None = None, reason: str, detail: str = "", now: datetime
                          ) -> dict[str, Any]:
    """Suppress `address` (or, without one, `profile_id`) on `channel` ('all' for every channel). The
    row (the existing one when already suppressed) as a dict, with "created" true when new."""
    if reason not in REASONS:
        raise InvalidArgument(f"unknown suppression reason {reason!r}", code="invalid_reason", field="reason")
    address = normalize_address(channel, address or "")
    if len(address) > MAX_ADDRESS:
        raise InvalidArgument("address is too long", code="invalid_address", field="address")
    if not address and not profile_id:
        raise InvalidArgument("address or profile_id is required", code="missing_target", field="address")
    row = await conn.fetchrow(
        """
        INSERT INTO suppressions (tenant_id, id, channel, address, profile_id, reason, detail, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING *
        """, tenant, new_id(), channel, address, profile_id or None, reason, detail[:2000], now)
    if row is not None:
        return {**dict(row), "created": True}
    if address:
        row = await conn.fetchrow("SELECT * FROM suppressions WHERE tenant_id = $1 AND channel = $2 AND address <> '' "
                                  "AND lower(address) = lower($3)", tenant, channel, address)
    else:
        row = await conn.fetchrow("SELECT * FROM suppressions WHERE tenant_id = $1 AND channel = $2 AND address = '' "
                                  "AND profile_id = $3", tenant, channel, profile_id)
    return {**dict(row), "created": False}


def message(row: Mapping[str, Any]) -> pb.Suppression:
    s = pb.Suppression(id=str(row["id"]), channel=CHANNEL_ENUM.get(row["channel"], pb.CHANNEL_UNSPECIFIED),
                       address=row["address"], profile_id=str(row["profile_id"]) if row["profile_id"] else "",
                       reason=SUPPRESSION_REASON_ENUM[row["reason"]], detail=row["detail"])
    set_timestamp(s.created_at, row["created_at"])
    return s


async def list_for_profile(conn: asyncpg.Connection, tenant: str, profile_id: str) -> list[dict[str, Any]]:
    """A profile's suppressions (by profile, and addresses found on it), oldest first."""
    rows = await conn.fetch("SELECT * FROM suppressions WHERE tenant_id = $1 AND profile_id = $2 ORDER BY created_at",
                            tenant, profile_id)
    return [dict(r) for r in rows]


async def delete(conn: asyncpg.Connection, tenant: str, suppression_id: str) -> bool:
    """Lift a suppression; False when there was none with that id."""
    if parse_uuid(suppression_id) is None:
        return False
    return await conn.fetchval("DELETE FROM suppressions WHERE tenant_id = $1 AND id = $2 RETURNING true",
                               tenant, suppression_id) is not None
