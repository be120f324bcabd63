"""Preferences: what a person chose in messaging (channel opt-ins, locale, time zone, quiet hours,
preferred channel). `channels` is stored as {"email": {"opted_in": false, "at": "<iso>"}}; a channel
without an entry is opted in.

SetPreferences merge rule: listed channels are replaced, the others kept; an empty locale/timezone,
an UNSPECIFIED preferred channel and an unset quiet_hours leave the stored value unchanged
(CHANNEL_BEST as preferred channel clears it: "let engagement decide")."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import orjson

from mcloud.messaging.v1 import messaging_pb2 as pb
from mcloud_common.errors import InvalidArgument
from mcloud_common.ids import parse_uuid
from mcloud_common.timestamps import set_timestamp
from messaging.domain.names import CHANNEL_ENUM, CHANNEL_OF, CHANNELS
from messaging.domain.policies import Preferences, QuietHours
from messaging.repo.contacts import load_contacts

_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,4}$")
MINUTES_PER_DAY = 1440


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = orjson.loads(value)
    return dict(value) if isinstance(value, dict) else {}


def _prefs(row: Mapping[str, Any]) -> Preferences:
    channels = {name: bool(v.get("opted_in", True)) for name, v in _json(row["channels"]).items()
                if isinstance(v, dict)}
    quiet = QuietHours(row["quiet_start_minute"], row["quiet_end_minute"]) if row["quiet_enabled"] else None
    return Preferences(profile_id=str(row["profile_id"]), channels=channels, locale=row["locale"],
                       timezone=row["timezone"], quiet_hours=quiet, preferred_channel=row["preferred_channel"])


async def load_preferences(conn: asyncpg.Connection, tenant: str, profile_ids: Sequence[str]
                           ) -> dict[str, Preferences]:
    """The stored preferences of `profile_ids` (people who never set any have no entry)."""
    ids = [p for p in dict.fromkeys(profile_ids) if parse_uuid(p) is not None]
    if not ids:
        return {}
    rows = await conn.fetch("SELECT * FROM preferences WHERE tenant_id = $1 AND profile_id = ANY($2::uuid[])",
                            tenant, ids)
    return {str(r["profile_id"]): _prefs(r) for r in rows}


def check_timezone(value: str, field: str = "preferences.timezone") -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(f"{value!r} is not an IANA time zone", code="invalid_timezone", field=field) from None
    return value


def check_locale(value: str, field: str = "preferences.locale") -> str:
    if not _LOCALE.match(value.replace("_", "-")):
        raise InvalidArgument(f"{value!r} is not a BCP 47 locale (e.g. en, zh-CN)", code="invalid_locale",
                              field=field)
    return value.replace("_", "-")


def check_channel(value: int, field: str) -> str:
    name = CHANNEL_OF.get(value)
    if name not in CHANNELS:
        raise InvalidArgument(f"{field} must be email, sms, push, in_app or webhook", code="invalid_channel",
                              field=field)
    return name


def _check_minute(value: int, field: str) -> int:
    if not 0 <= value < MINUTES_PER_DAY:
        raise InvalidArgument(f"{field} must be 0..1439 (minutes after local midnight)", code="invalid_minute",
                              field=field)
    return value


def message(profile_id: str, row: Mapping[str, Any] | None, contact=None) -> pb.Preferences:
    """The API view: stored preferences, or the defaults (every channel opted in, no explicit entry;
    locale and time zone from the contact)."""
    out = pb.Preferences(profile_id=profile_id)
    if row is None:
        if contact is not None and not contact.erased:
            out.locale = contact.locale or ""
            out.timezone = contact.timezone or ""
        return out
    for name in CHANNELS:
        entry = _json(row["channels"]).get(name)
        if isinstance(entry, dict):
            c = out.channels.add(channel=CHANNEL_ENUM[name], opted_in=bool(entry.get("opted_in", True)))
            if entry.get("at"):
                set_timestamp(c.updated_at, datetime.fromisoformat(entry["at"]))
    out.locale = row["locale"] or (contact.locale if contact is not None and contact.locale else "")
    out.timezone = row["timezone"] or (contact.timezone if contact is not None and contact.timezone else "")
    out.quiet_hours.enabled = row["quiet_enabled"]
    out.quiet_hours.start_minute = row["quiet_start_minute"]
    out.quiet_hours.end_minute = row["quiet_end_minute"]
    if row["preferred_channel"]:
        out.preferred_channel = CHANNEL_ENUM[row["preferred_channel"]]
    set_timestamp(out.updated_at, row["updated_at"])
    return out


async def get(conn: asyncpg.Connection, tenant: str, profile_id: str) -> pb.Preferences:
    row = await conn.fetchrow("SELECT * FROM preferences WHERE tenant_id = $1 AND profile_id = $2", tenant,
                              profile_id)
    contact = (await load_contacts(conn, tenant, [profile_id])).get(profile_id)
    return message(profile_id, row, contact)


def check(prefs: pb.Preferences) -> dict[str, bool]:
    """Validate a SetPreferences body; the listed channels as {name: opted_in} (the last entry of a
    channel listed twice wins)."""
    channels: dict[str, bool] = {}
    for i, c in enumerate(prefs.channels):
        channels[check_channel(c.channel, f"preferences.channels[{i}].channel")] = c.opted_in
    if prefs.locale:
        check_locale(prefs.locale)
    if prefs.timezone:
        check_timezone(prefs.timezone)
    if prefs.HasField("quiet_hours"):
        _check_minute(prefs.quiet_hours.start_minute, "preferences.quiet_hours.start_minute")
        _check_minute(prefs.quiet_hours.end_minute, "preferences.quiet_hours.end_minute")
    if prefs.preferred_channel not in (pb.CHANNEL_UNSPECIFIED, pb.CHANNEL_BEST):
        check_channel(prefs.preferred_channel, "preferences.preferred_channel")
    return channels


async def set_channels(conn: asyncpg.Connection, tenant: str, profile_id: str, channels: Mapping[str, bool],
                       now: datetime) -> list[str]:
    """Set opt-ins of `channels` and nothing else; the channels that went from opted in to out."""
    request = pb.Preferences(profile_id=profile_id)
    for name, opted_in in channels.items():
        request.channels.add(channel=CHANNEL_ENUM[name], opted_in=opted_in)
    _, opted_out = await set_preferences(conn, tenant, request, now)
    return opted_out


async def set_preferences(conn: asyncpg.Connection, tenant: str, prefs: pb.Preferences, now: datetime
                          ) -> tuple[pb.Preferences, list[str]]:
    """Apply SetPreferences (the merge rule above); the preferences after it and the channels that
    went from opted in to opted out (in CHANNELS order)."""
    channels = check(prefs)
    pid = prefs.profile_id
    async with conn.transaction():
        await conn.execute("INSERT INTO preferences (tenant_id, profile_id, updated_at) VALUES ($1, $2, $3) "
                           "ON CONFLICT DO NOTHING", tenant, pid, now)
        row = await conn.fetchrow("SELECT * FROM preferences WHERE tenant_id = $1 AND profile_id = $2 FOR UPDATE",
                                  tenant, pid)
        stored = _json(row["channels"])
        opted_out = [name for name in CHANNELS if channels.get(name) is False
                     and (stored.get(name) or {}).get("opted_in", True)]
        for name, opted_in in channels.items():
            if (stored.get(name) or {}).get("opted_in") != opted_in:
                stored[name] = {"opted_in": opted_in, "at": now.isoformat()}
        quiet = prefs.quiet_hours if prefs.HasField("quiet_hours") else None
        if prefs.preferred_channel == pb.CHANNEL_BEST:
            preferred: str | None = None
        elif prefs.preferred_channel == pb.CHANNEL_UNSPECIFIED:
            preferred = row["preferred_channel"]
        else:
            preferred = CHANNEL_OF[prefs.preferred_channel]
        row = await conn.fetchrow(
            """
            UPDATE preferences SET channels = $3, locale = $4, timezone = $5, quiet_enabled = $6,
                quiet_start_minute = $7, quiet_end_minute = $8, preferred_channel = $9, updated_at = $10
            WHERE tenant_id = $1 AND profile_id = $2 RETURNING *
            """,
            tenant, pid, stored, check_locale(prefs.locale) if prefs.locale else row["locale"],
            prefs.timezone or row["timezone"], quiet.enabled if quiet else row["quiet_enabled"],
            quiet.start_minute if quiet else row["quiet_start_minute"],
            quiet.end_minute if quiet else row["quiet_end_minute"], preferred, now)
        contact = (await load_contacts(conn, tenant, [pid])).get(pid)
    return message(pid, row, contact), opted_out
