"""GetProfile, ListProfileEvents, UpdateProfile, SetConsent."""

from __future__ import annotations

import re
from datetime import datetime

import orjson

from identity.domain.calls import CALL_TYPES
from identity.domain.traits import TraitWrite
from identity.grpc_api.base import Context, ServicerBase
from identity.grpc_api.profile_view import profile_message
from identity.repo import consent as consent_repo
from identity.repo import profile_updates
from identity.repo import profiles as profile_repo
from mcloud.identity.v1 import identity_pb2
from mcloud_common import idempotency
from mcloud_common.errors import InvalidArgument
from mcloud_common.grpc_server import tenant_id
from mcloud_common.ids import parse_uuid
from mcloud_common.timestamps import from_timestamp, to_timestamp

_TYPE_ENUM = {getattr(identity_pb2, f"CALL_TYPE_{t.upper()}"): t for t in CALL_TYPES}
_TYPE_ENUM = {v: k for k, v in _TYPE_ENUM.items()}
_CONSENT_ENUM = {s: getattr(identity_pb2, f"CONSENT_STATE_{s.upper()}") for s in consent_repo.STATES}
_CONSENT_NAME = {v: k for k, v in _CONSENT_ENUM.items()}
DEFAULT_SOURCE = "server"
MAX_TAG = 128
MAX_TAGS_PER_CALL = 100
MAX_TRAITS_JSON = 64 * 1024
MAX_KEY = 256
# \u0000 as a JSON escape (preceded by an even run of backslashes): valid JSON that jsonb cannot hold
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _traits(text: str) -> dict:
    if not text:
        return {}
    if len(text) > MAX_TRAITS_JSON:
        raise InvalidArgument(f"traits_json longer than {MAX_TRAITS_JSON} bytes", code="traits_too_large")
    if _NUL_ESCAPE.search(text):
        raise InvalidArgument("traits_json contains a NUL character (\\u0000)", code="invalid_character")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument("traits_json is not valid JSON", code="invalid_json") from exc
    if not isinstance(value, dict):
        raise InvalidArgument("traits_json must be a JSON object", code="invalid_json")
    if any(not k or len(k) > MAX_KEY for k in value):
        raise InvalidArgument(f"trait names must be 1 to {MAX_KEY} characters", code="invalid_trait_name")
    return value


def _tags(tags: list[str], field: str) -> list[str]:
    if len(tags) > MAX_TAGS_PER_CALL:
        raise InvalidArgument(f"at most {MAX_TAGS_PER_CALL} {field} per call", code="too_many_tags")
    for tag in tags:
        if not tag.strip() or len(tag) > MAX_TAG or "\x00" in tag:
            raise InvalidArgument(f"{field}: tags must be 1 to {MAX_TAG} characters, not blank", code="invalid_tag")
    return list(dict.fromkeys(tags))


def _source(source: str) -> str:
    source = source or DEFAULT_SOURCE
    if len(source) > consent_repo.MAX_SOURCE or "\x00" in source:
        raise InvalidArgument(f"source must be at most {consent_repo.MAX_SOURCE} characters", code="invalid_source")
    return source


class ProfilesApi(ServicerBase):
    async def GetProfile(self, request: identity_pb2.GetProfileRequest, context: Context):
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn:
            profile_id = await self.resolve_key(conn, tenant, request)
            profile = await profile_message(conn, tenant, profile_id)
        return identity_pb2.GetProfileResponse(profile=profile)

    async def ListProfileEvents(self, request: identity_pb2.ListProfileEventsRequest,
                                context: Context):
        tenant = tenant_id(context)
        size = request.page_size or 50
        if not 0 < size <= 1000:
            raise InvalidArgument("page_size must be between 1 and 1000", code="invalid_page_size")
        before = None
        if request.page_token:
            ts, _, last_id = request.page_token.partition("|")
            try:
                when = datetime.fromisoformat(ts)
            except ValueError:
                when = None
            if when is None or when.tzinfo is None or parse_uuid(last_id) is None:
                raise InvalidArgument("page_token is not one this API returned", code="invalid_page_token")
            before = (when, last_id)
        async with self._pool.acquire() as conn:
            profile_id = await self.resolve_id(conn, tenant, request.profile_id)
            rows = await profile_repo.list_events(conn, tenant, profile_id, limit=size, before=before)
        response = identity_pb2.ListProfileEventsResponse(events=[
            identity_pb2.ProfileEvent(
                id=r["id"], type=_TYPE_ENUM.get(r["type"], identity_pb2.CALL_TYPE_UNSPECIFIED), name=r["name"],
                properties_json=orjson.dumps(r["properties"]).decode(), timestamp=to_timestamp(r["timestamp"]),
                channel=r["channel"], message_id=r["message_id"],
            ) for r in rows
        ])
        if len(rows) == size:
            response.next_page_token = f"{rows[-1]['timestamp'].isoformat()}|{rows[-1]['id']}"
        return response

    async def UpdateProfile(self, request: identity_pb2.UpdateProfileRequest, context: Context):
        """Traits (source given, default "server", at the service clock's now) and tags; idempotent by
        idempotency_key (a retry gets the first response)."""
        tenant = tenant_id(context)
        traits = _traits(request.traits_json)
        add, remove = _tags(list(request.add_tags), "add_tags"), _tags(list(request.remove_tags), "remove_tags")
        if set(add) & set(remove):
            raise InvalidArgument("a tag cannot be both added and removed", code="conflicting_tags")
        source = _source(request.source)
        if len(request.idempotency_key) > MAX_KEY:
            raise InvalidArgument(f"idempotency_key longer than {MAX_KEY}", code="invalid_idempotency_key")
        async with self._pool.acquire() as conn:

            async def run() -> identity_pb2.UpdateProfileResponse:
                async with conn.transaction():
                    profile_id = await self.resolve_id(conn, tenant, request.profile_id)
                    now = self._clock.now()
                    await profile_updates.update_profile(
                        conn, tenant, profile_id, writes=[TraitWrite(k, v, source, now) for k, v in traits.items()],
                        add_tags=add, remove_tags=remove, settings=await self.tenant_settings(conn, tenant),
                        shards=self._shards, now=now)
                    return identity_pb2.UpdateProfileResponse(profile=await profile_message(conn, tenant, profile_id))

            return await idempotency.once(conn, tenant, "UpdateProfile", request.idempotency_key,
                                          identity_pb2.UpdateProfileResponse, run)

    async def SetConsent(self, request: identity_pb2.SetConsentRequest, context: Context):
        """Record a consent change; the latest `at` (default: now) wins, every change is logged."""
        tenant = tenant_id(context)
        purpose = request.purpose or consent_repo.DEFAULT_PURPOSE
        state = _CONSENT_NAME.get(request.state, "")
        source = request.source or DEFAULT_SOURCE
        consent_repo.check(request.channel, purpose, state, source)
        at = from_timestamp(request.at) if request.HasField("at") else self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            profile_id = await self.resolve_id(conn, tenant, request.profile_id)  # NotFound when erased
            outcome = await consent_repo.record(
                conn, tenant, profile_id,
                consent_repo.ConsentRecord(request.channel, purpose, state, source, at), shards=self._shards)
        return identity_pb2.SetConsentResponse(state=_CONSENT_ENUM[outcome.state])
