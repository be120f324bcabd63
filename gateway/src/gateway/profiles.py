"""Profile lookups: identifier parsing (Segment Profile API style) and proto -> read model mapping."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.errors import ProblemError
from gateway.ingest import CALL_TYPE_NAME
from gateway.schemas.profiles import ConsentRead, IdentifierRead, ProfileEventRead, ProfileRead
from mcloud.identity.v1 import identity_pb2, identity_pb2_grpc
from mcloud_common.ids import parse_uuid

_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
CONSENT_STATE = {
    "granted": identity_pb2.CONSENT_STATE_GRANTED,
    "denied": identity_pb2.CONSENT_STATE_DENIED,
    "withdrawn": identity_pb2.CONSENT_STATE_WITHDRAWN,
}
CONSENT_STATE_NAME = {v: k for k, v in CONSENT_STATE.items()}


def lookup_request(identifier: str) -> identity_pb2.GetProfileRequest:
    """GetProfile by profile UUID, or by `type:value` (user_id:42, anonymous_id:abc, email:a@b.c)."""
    if parse_uuid(identifier) is not None:
        return identity_pb2.GetProfileRequest(profile_id=identifier)
    kind, sep, value = identifier.partition(":")
    if not sep or not value or not _TYPE.match(kind):
        raise ProblemError(
            "invalid_identifier",
            "Use a profile id (UUID) or type:value, e.g. user_id:42, anonymous_id:abc, "
            "email:rachel@example.com.",
        )
    return identity_pb2.GetProfileRequest(identifier=identity_pb2.Identifier(type=kind, value=value))


async def resolve_profile_id(
    identity: identity_pb2_grpc.IdentityServiceStub, identifier: str, metadata: tuple[tuple[str, str], ...]
) -> str:
    """The profile id for a path identifier: a UUID as given (identity follows merges itself), a
    type:value through GetProfile (NOT_FOUND, hence 404, when nobody has it)."""
    if parse_uuid(identifier) is not None:
        return identifier
    found = await identity.GetProfile(lookup_request(identifier), metadata=metadata)
    return found.profile.id


def _time(ts: Timestamp) -> datetime | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=UTC)


def time_field(message: Any, name: str) -> datetime | None:
    """The datetime in timestamp field `name` of `message`, None when unset."""
    return _time(getattr(message, name)) if message.HasField(name) else None


def _json_object(text: str) -> dict[str, Any]:
    if not text:
        return {}
    value = orjson.loads(text)
    return value if isinstance(value, dict) else {}


def profile_read(p: identity_pb2.Profile) -> ProfileRead:
    return ProfileRead(
        id=p.id,
        identifiers=[IdentifierRead(type=i.type, value=i.value) for i in p.identifiers],
        traits=_json_object(p.traits_json),
        tags=list(p.tags),
        lifecycle_stage=p.lifecycle_stage,
        computed=_json_object(p.computed_json),
        created_at=_time(p.created_at) if p.HasField("created_at") else None,
        updated_at=_time(p.updated_at) if p.HasField("updated_at") else None,
        merged_from=list(p.merged_from),
        consents=[consent_read(c) for c in p.consents],
        segment_ids=list(p.segment_ids),
    )


def consent_read(c: identity_pb2.Consent) -> ConsentRead:
    return ConsentRead(
        channel=c.channel,
        purpose=c.purpose,
        state=CONSENT_STATE_NAME.get(c.state, "unspecified"),
        source=c.source,
        at=time_field(c, "at"),
    )


def event_read(e: identity_pb2.ProfileEvent) -> ProfileEventRead:
    return ProfileEventRead(
        id=e.id,
        type=CALL_TYPE_NAME.get(e.type, "unspecified"),
        name=e.name,
        properties=_json_object(e.properties_json),
        timestamp=_time(e.timestamp) if e.HasField("timestamp") else None,
        channel=e.channel,
        message_id=e.message_id,
    )
