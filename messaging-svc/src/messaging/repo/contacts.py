"""Contacts: messaging's copy of what it needs from identity (addresses, locale, time zone, consent,
traits for personalisation).

Kept current from identity's events (profile.identified, consent.changed, merges, erasure) and filled
from GetProfile on a miss. A row only ever seen through events (no GetProfile yet) is *partial*: its
`synced_at` is PARTIAL (the epoch), because events carry neither identifiers nor consents recorded
before messaging saw the person; `fill_contacts` completes such rows from GetProfile (and keeps them
as they are when identity cannot be reached). An erased person is a tombstone (erased = true).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import grpc
import orjson
import phonenumbers
from email_validator import EmailNotValidError, validate_email

from mcloud.identity.v1 import identity_pb2
from mcloud_common.errors import Unavailable
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.ids import parse_uuid
from mcloud_common.logs import get_logger
from messaging.domain.policies import Contact

log = get_logger(__name__)

PARTIAL = datetime(1970, 1, 1, tzinfo=UTC)
FILL_CONCURRENCY = 16
MAX_PUSH_TOKENS = 10
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")
_CONSENT_NAME = {identity_pb2.CONSENT_STATE_GRANTED: "granted", identity_pb2.CONSENT_STATE_DENIED: "denied",
                 identity_pb2.CONSENT_STATE_WITHDRAWN: "withdrawn"}
# only marketing consent gates sends (identity's default purpose; "" from older callers)
_PURPOSES = frozenset({"", "marketing"})
_PUSH_IDENTIFIERS = frozenset({"device_token", "push_token"})

_UPSERT = """
    INSERT INTO contacts (tenant_id, profile_id, email, phone, push_tokens, webhook_url, locale, timezone, traits,
                          consent, erased, synced_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, false, $11)
    ON CONFLICT (tenant_id, profile_id) DO UPDATE SET
        email = excluded.email, phone = excluded.phone, push_tokens = excluded.push_tokens,
        webhook_url = excluded.webhook_url, locale = excluded.locale, timezone = excluded.timezone,
        traits = excluded.traits, consent = excluded.consent, synced_at = excluded.synced_at
    WHERE NOT contacts.erased
"""


# ---------------------------------------------------------------------------------------------- values

def normalize_email(value: Any) -> str | None:
    """The normalised address, or None when `value` is not a valid email address."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        return None


def normalize_phone(value: Any, region: str | None = None) -> str | None:
    """The number in E.164, or None when it is not a valid number (`region` hints national numbers)."""
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region.upper() if region and not text.startswith("+") else None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_address(channel: str, address: str) -> str:
    """An address as stored for `channel` (emails normalised, phones E.164 when valid), else stripped."""
    text = address.strip()
    if channel == "email":
        return normalize_email(text) or text
    if channel == "sms":
        return normalize_phone(text) or text
    return text


def _timezone(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return value.strip()


def _locale(value: Any) -> str | None:
    if isinstance(value, str) and _LOCALE.match(value.strip()):
        return value.strip().replace("_", "-")
    return None


def _url(value: Any) -> str | None:
    if isinstance(value, str) and re.match(r"^https?://\S+$", value.strip()):
        return value.strip()
    return None


def _tokens(traits: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key in ("push_token", "push_tokens", "device_token", "device_tokens"):
        value = traits.get(key)
        values = value if isinstance(value, list) else [value]
        out.extend(v.strip() for v in values if isinstance(v, str) and v.strip())
    return list(dict.fromkeys(out))


def _first(traits: Mapping[str, Any], *keys: str) -> tuple[bool, Any]:
    for key in keys:
        if key in traits:
            return True, traits[key]
    return False, None


def _apply_traits(current: dict[str, Any], traits: Mapping[str, Any]) -> dict[str, Any]:
    """`current` contact columns updated from identity traits: a valid value replaces, an explicit
    null/empty clears, an invalid one is kept out of the address columns."""
    out = dict(current)
    region = traits.get("country") if isinstance(traits.get("country"), str) else None
    for column, keys, check in (
        ("email", ("email",), normalize_email),
        ("phone", ("phone", "phone_number", "mobile"), lambda v: normalize_phone(v, region)),
        ("webhook_url", ("webhook_url",), _url),
        ("locale", ("locale", "language"), _locale),
        ("timezone", ("timezone", "time_zone"), _timezone),
    ):
        present, value = _first(traits, *keys)
        if not present:
            continue
        if value is None or value == "":
            out[column] = None
        elif (checked := check(value)) is not None:
            out[column] = checked
    tokens = _tokens(traits)
    if tokens:
        out["push_tokens"] = list(dict.fromkeys([*tokens, *out.get("push_tokens", [])]))[:MAX_PUSH_TOKENS]
    return out


def _contact(row: Mapping[str, Any]) -> Contact:
    return Contact(profile_id=str(row["profile_id"]), email=row["email"], phone=row["phone"],
                   push_tokens=tuple(row["push_tokens"] or ()), webhook_url=row["webhook_url"], locale=row["locale"],
                   timezone=row["timezone"], traits=_json(row["traits"]), consent=_json(row["consent"]),
                   erased=row["erased"])


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # a connection without the jsonb codec
        value = orjson.loads(value)
    return dict(value) if isinstance(value, dict) else {}


def _empty(profile_id: str) -> dict[str, Any]:
    return {"profile_id": profile_id, "email": None, "phone": None, "push_tokens": [], "webhook_url": None,
            "locale": None, "timezone": None, "traits": {}, "consent": {}, "erased": False, "synced_at": PARTIAL}


async def _write(conn: asyncpg.Connection, tenant: str, c: Mapping[str, Any], synced_at: datetime) -> None:
    await conn.execute(_UPSERT, tenant, c["profile_id"], c["email"], c["phone"], list(c["push_tokens"]),
                       c["webhook_url"], c["locale"], c["timezone"], dict(c["traits"]), dict(c["consent"]), synced_at)


async def _locked_row(conn: asyncpg.Connection, tenant: str, profile_id: str) -> dict[str, Any] | None:
    # one writer per person at a time (the row may not exist yet, so a row lock is not enough)
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"contact|{tenant}|{profile_id}")
    row = await conn.fetchrow("SELECT * FROM contacts WHERE tenant_id = $1 AND profile_id = $2", tenant, profile_id)
    return None if row is None else {**dict(row), "traits": _json(row["traits"]), "consent": _json(row["consent"]),
                                     "profile_id": str(row["profile_id"])}


# ---------------------------------------------------------------------------------------------- reads

async def load_contacts(conn: asyncpg.Connection, tenant: str, profile_ids: Sequence[str]) -> dict[str, Contact]:
    """The stored contacts of `profile_ids` (tombstones included, as erased contacts)."""
    ids = [p for p in dict.fromkeys(profile_ids) if parse_uuid(p) is not None]
    if not ids:
        return {}
    rows = await conn.fetch("SELECT * FROM contacts WHERE tenant_id = $1 AND profile_id = ANY($2::uuid[])",
                            tenant, ids)
    return {str(r["profile_id"]): _contact(r) for r in rows}


def contact_from_profile(profile_id: str, profile: identity_pb2.Profile) -> dict[str, Any]:
    """Contact columns from an identity profile: identifiers, then traits (which win), and marketing
    consent per channel."""
    try:
        traits = orjson.loads(profile.traits_json or "{}")
    except orjson.JSONDecodeError:
        traits = {}
    traits = traits if isinstance(traits, dict) else {}
    c = _empty(profile_id)
    region = traits.get("country") if isinstance(traits.get("country"), str) else None
    tokens: list[str] = []
    for ident in profile.identifiers:
        if ident.type == "email" and c["email"] is None:
            c["email"] = normalize_email(ident.value)
        elif ident.type == "phone" and c["phone"] is None:
            c["phone"] = normalize_phone(ident.value, region)
        elif ident.type in _PUSH_IDENTIFIERS and ident.value:
            tokens.append(ident.value)
    c["push_tokens"] = list(dict.fromkeys(tokens))[:MAX_PUSH_TOKENS]
    c = _apply_traits(c, traits)
    c["traits"] = traits
    c["consent"] = {x.channel: _CONSENT_NAME[x.state] for x in profile.consents
                    if x.purpose in _PURPOSES and x.state in _CONSENT_NAME}
    return c


async def fill_contacts(conn: asyncpg.Connection, identity_stub, tenant: str,
                        profile_ids: Sequence[str]) -> dict[str, Contact]:
    """The contacts of `profile_ids`, those missing (or only known from events) fetched from identity's
    GetProfile (at most FILL_CONCURRENCY at once) and stored. Unknown or erased people have no entry.
    UNAVAILABLE when identity cannot be reached for a person messaging knows nothing of."""
    have = await load_contacts(conn, tenant, profile_ids)
    partial = {str(r["profile_id"]) for r in await conn.fetch(
        "SELECT profile_id FROM contacts WHERE tenant_id = $1 AND profile_id = ANY($2::uuid[]) AND synced_at = $3 "
        "AND NOT erased", tenant, list(have), PARTIAL)} if have else set()
    wanted = [p for p in dict.fromkeys(profile_ids) if parse_uuid(p) is not None and (p not in have or p in partial)]
    if not wanted:
        return have
    gate = asyncio.Semaphore(FILL_CONCURRENCY)
    metadata = tenant_metadata(tenant)

    async def fetch(pid: str) -> identity_pb2.Profile | None:
        async with gate:
            try:
                return (await identity_stub.GetProfile(identity_pb2.GetProfileRequest(profile_id=pid),
                                                       metadata=metadata)).profile
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                if pid in partial:  # keep what the events told us rather than fail the send
                    log.warning("identity unreachable; using the contact known from events", profile_id=pid,
                                status=exc.code().name)
                    return None
                raise Unavailable(f"identity-svc could not be reached: {exc.code().name}",
                                  code="identity_unavailable") from exc

    profiles = await asyncio.gather(*(fetch(p) for p in wanted))
    async with conn.transaction():
        for pid, profile in zip(wanted, profiles, strict=True):
            if profile is None:
                continue
            fresh = contact_from_profile(pid, profile)
            if pid in partial:  # events seen since keep their traits where the profile has none
                old = await _locked_row(conn, tenant, pid)
                if old is not None and not old["erased"]:
                    fresh["traits"] = {**old["traits"], **fresh["traits"]}
                    fresh["consent"] = {**old["consent"], **fresh["consent"]}
                    for column in ("email", "phone", "webhook_url", "locale", "timezone"):
                        fresh[column] = fresh[column] or old[column]
            await _write(conn, tenant, fresh, datetime.now(UTC))
    return {**have, **await load_contacts(conn, tenant, wanted)}


# ---------------------------------------------------------------------------------------------- writes

async def upsert_from_traits(conn: asyncpg.Connection, tenant: str, profile_id: str, traits: Mapping[str, Any],
                             now: datetime) -> None:
    """Merge identity traits (profile.identified) into the contact; a new row is partial until
    fill_contacts completes it. Tombstones stay untouched."""
    async with conn.transaction():
        row = await _locked_row(conn, tenant, profile_id)
        if row is not None and row["erased"]:
            return
        current = row or _empty(profile_id)
        updated = _apply_traits(current, traits)
        updated["traits"] = {**current["traits"], **traits}
        await _write(conn, tenant, updated, now if row is not None and row["synced_at"] != PARTIAL else PARTIAL)


async def set_consent(conn: asyncpg.Connection, tenant: str, profile_id: str, channel: str, state: str,
                      now: datetime) -> None:
    """Record the marketing consent `state` ("granted", "denied", "withdrawn") of `channel` ("all" too)."""
    state = state.lower()
    async with conn.transaction():
        row = await _locked_row(conn, tenant, profile_id)
        if row is not None and row["erased"]:
            return
        current = row or _empty(profile_id)
        current["consent"] = {**current["consent"], channel: state}
        await _write(conn, tenant, current, now if row is not None and row["synced_at"] != PARTIAL else PARTIAL)


async def profile_of_address(conn: asyncpg.Connection, tenant: str, channel: str, address: str) -> str:
    """The profile whose email (or phone) `address` is, "" when none or ambiguous."""
    if channel in ("email", "all") and "@" in address:
        rows = await conn.fetch("SELECT profile_id FROM contacts WHERE tenant_id = $1 AND lower(email) = lower($2) "
                                "AND NOT erased LIMIT 2", tenant, address)
    elif channel in ("sms", "all"):
        rows = await conn.fetch("SELECT profile_id FROM contacts WHERE tenant_id = $1 AND phone = $2 AND NOT erased "
                                "LIMIT 2", tenant, address)
    else:
        return ""
    return str(rows[0]["profile_id"]) if len(rows) == 1 else ""
