"""Segment-compatible calls as identity sees them: validation and the identifiers each carries."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime

from identity.domain.resolution import Key, normalise_email
from mcloud_common.tracking_spec import CALL_TYPES, CHANNELS, MAX_EMAIL_LENGTH, MAX_ID_LENGTH

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


def lookup_keys(call: Call) -> list[Key]:
    """Every identifier the database must be asked about before resolving this call."""
    keys = identifiers_of(call, known=())
    if call.type == "alias":
        keys.append(("user_id", call.previous_id))
    return keys


def identifiers_of(call: Call, known: Container[Key]) -> list[Key]:
    """The identifiers a call asserts belong together, strongest first. For alias, previousId is
    an earlier user id when one is known, else the anonymous id it was (Segment semantics)."""
    keys: list[Key] = []
    if call.user_id:
        keys.append(("user_id", call.user_id))
    if call.type == "identify":
        email = call.traits.get("email")
        if isinstance(email, str) and "@" in email and len(email.strip()) <= MAX_EMAIL_LENGTH:
            keys.append(("email", normalise_email(email)))
    if call.anonymous_id:
        keys.append(("anonymous_id", call.anonymous_id))
    if call.type == "alias":
        previous = ("user_id", call.previous_id)
        keys.append(previous if previous in known else ("anonymous_id", call.previous_id))
    return list(dict.fromkeys(keys))
