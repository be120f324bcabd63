"""Segment-compatible calls as identity sees them: validation and the identifiers each carries."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime

import orjson

from identity.domain.normalise import InvalidIdentifier, normalise
from identity.domain.resolution import Key
from identity.domain.settings import TenantSettings
from mcloud_common.tracking_spec import CALL_TYPES, CHANNELS, MAX_ID_LENGTH

_TEXT_FIELDS = ("user_id", "anonymous_id", "previous_id", "group_id", "message_id", "name")


@dataclass
class Call:
    type: str
    message_id: str
    anonymous_id: str
    user_id: str
    name: str
    properties_json: str  # validated JSON object text, kept as received (parsed once, never re-encoded)
    traits: dict
    traits_json: str
    context_json: str
    previous_id: str
    group_id: str
    timestamp: datetime
    received_at: datetime
    channel: str


class Rejected(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def validate(call: Call) -> None:
    """Raise Rejected with a stable code when the call breaks the Tracking API rules."""
    if call.type not in CALL_TYPES:
        raise Rejected("invalid_type", f"type must be one of {', '.join(CALL_TYPES)}")
    if not (call.user_id or call.anonymous_id):
        raise Rejected("missing_identity", "userId or anonymousId is required")
    for field_name in _TEXT_FIELDS:
        value = getattr(call, field_name)
        if len(value) > MAX_ID_LENGTH:
            raise Rejected("id_too_long", f"{field_name} longer than {MAX_ID_LENGTH} characters")
        if "\x00" in value:  # PostgreSQL text cannot hold NUL
            raise Rejected("invalid_character", f"{field_name} contains a NUL character")
    if call.type == "track" and not call.name:
        raise Rejected("missing_event", "track calls need an event name")
    if call.type == "alias" and not (call.previous_id and call.user_id):
        raise Rejected("missing_previous_id", "alias calls need previousId and userId")
    if call.type == "group" and not call.group_id:
        raise Rejected("missing_group_id", "group calls need groupId")
    if call.channel and call.channel not in CHANNELS:
        raise Rejected("invalid_channel", f"channel must be one of {', '.join(sorted(CHANNELS))}")


class NoIdentity(Rejected):
    def __init__(self, problems: list[InvalidIdentifier]) -> None:
        detail = "; ".join(p.detail for p in problems) or "no usable identifier"
        super().__init__(problems[0].code if problems else "missing_identity", f"no usable identifier: {detail}")


def _device_id(call: Call) -> str:
    """context.device.id (mobile SDKs), parsed only when the context mentions a device."""
    if '"device"' not in call.context_json:
        return ""
    try:
        device = orjson.loads(call.context_json).get("device")
    except orjson.JSONDecodeError:
        return ""
    value = device.get("id") if isinstance(device, dict) else None
    return value if isinstance(value, str) else ""


def raw_identifiers(call: Call, settings: TenantSettings) -> list[Key]:
    """The identifiers a call carries, as sent: userId, anonymousId, context.device.id, and identify
    traits named like an identifier type (email, phone, member_id, custom types, ...)."""
    keys: list[Key] = []
    if call.user_id:
        keys.append(("user_id", call.user_id))
    if call.traits and call.type == "identify":
        for name, value in call.traits.items():
            if name in ("user_id", "anonymous_id") or settings.rule(name) is None:
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = str(value)
            if isinstance(value, str) and value.strip():
                keys.append((name, value))
    if call.anonymous_id:
        keys.append(("anonymous_id", call.anonymous_id))
    device = _device_id(call)
    if device:
        keys.append(("device_id", device))
    return keys


def clean_identifiers(call: Call, settings: TenantSettings) -> tuple[list[Key], list[InvalidIdentifier]]:
    """Normalised identifiers, strongest first, junk left out (and reported)."""
    keys: list[Key] = []
    problems: list[InvalidIdentifier] = []
    for type_, value in raw_identifiers(call, settings):
        try:
            keys.append((type_, normalise(settings, type_, value)))
        except InvalidIdentifier as exc:
            problems.append(exc)
    if call.type == "alias" and call.previous_id:
        try:
            keys.append(("previous_id", normalise(settings, "anonymous_id", call.previous_id)))
        except InvalidIdentifier as exc:
            problems.append(exc)
    keys = list(dict.fromkeys(keys))
    return keys, problems


def priority_order(keys: list[Key], settings: TenantSettings) -> list[Key]:
    def rank(k: Key) -> tuple[int, str]:
        rule = settings.rule(k[0])
        return (rule.priority if rule is not None else 500, k[0])

    return sorted(keys, key=rank)


def lookup_keys(keys: list[Key]) -> list[Key]:
    """Every identifier the database must be asked about; alias previousId may be either kind."""
    out: list[Key] = []
    for k in keys:
        if k[0] == "previous_id":
            out.extend((("user_id", k[1]), ("anonymous_id", k[1])))
        else:
            out.append(k)
    return list(dict.fromkeys(out))


def identifiers_of(keys: list[Key], known: Container[Key], settings: TenantSettings) -> list[Key]:
    """The identifiers a call asserts belong together, strongest first. For alias, previousId is an
    earlier user id when one is known, else the anonymous id it was (Segment semantics)."""
    out: list[Key] = []
    for k in keys:
        if k[0] == "previous_id":
            previous = ("user_id", k[1])
            out.append(previous if previous in known else ("anonymous_id", k[1]))
        else:
            out.append(k)
    return priority_order(list(dict.fromkeys(out)), settings)
