"""IngestEvents: validation per event, then the batch hot path (repo.ingest)."""

from __future__ import annotations

import re
from datetime import datetime

import orjson

from identity.domain.calls import CALL_TYPES, Call, Rejected, validate
from identity.grpc_api.base import Context, ServicerBase
from mcloud.identity.v1 import identity_pb2
from mcloud_common.errors import InvalidArgument
from mcloud_common.grpc_server import tenant_id
from mcloud_common.ids import new_id_str
from mcloud_common.timestamps import from_timestamp

_TYPE_NAME = {getattr(identity_pb2, f"CALL_TYPE_{t.upper()}"): t for t in CALL_TYPES}
_TYPE_ENUM = {v: k for k, v in _TYPE_NAME.items()}
MAX_BATCH = 2500
# \u0000 as a JSON escape: preceded by an even number of backslashes (an odd run is a literal "\\u0000")
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _json_object(text: str, field: str) -> dict:
    if not text:
        return {}
    if "\\u0000" in text and _NUL_ESCAPE.search(text):  # valid JSON, but jsonb cannot hold NUL
        raise Rejected("invalid_character", f"{field} contains a NUL character (\\u0000)")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Rejected("invalid_json", f"{field} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise Rejected("invalid_json", f"{field} must be a JSON object")
    return value


def _checked_json(text: str, field: str) -> str:
    """`text` when it is a JSON object jsonb can hold, "{}" when empty; Rejected otherwise."""
    _json_object(text, field)
    return text or "{}"


def _to_call(ev: identity_pb2.InboundEvent, now: datetime) -> Call:
    traits = _json_object(ev.traits_json, "traits")
    received = from_timestamp(ev.received_at) if ev.HasField("received_at") else now
    return Call(
        type=_TYPE_NAME.get(ev.type, ""),
        message_id=ev.message_id or new_id_str(),
        anonymous_id=ev.anonymous_id,
        user_id=ev.user_id,
        name=ev.name,
        properties_json=_checked_json(ev.properties_json, "properties"),
        traits=traits,
        traits_json=ev.traits_json or "{}",
        context_json=_checked_json(ev.context_json, "context"),
        previous_id=ev.previous_id,
        group_id=ev.group_id,
        timestamp=from_timestamp(ev.timestamp) if ev.HasField("timestamp") else received,
        received_at=received,
        channel=ev.channel,
    )


class IngestApi(ServicerBase):
    async def IngestEvents(self, request: identity_pb2.IngestEventsRequest, context: Context):
        tenant = tenant_id(context)
        if len(request.events) > MAX_BATCH:
            raise InvalidArgument(f"at most {MAX_BATCH} events per call", code="batch_too_large")
        now = self._clock.now()
        calls: list[Call] = []
        positions: list[int] = []
        response = identity_pb2.IngestEventsResponse()
        for index, ev in enumerate(request.events):
            try:
                call = _to_call(ev, now)
                validate(call)
            except Rejected as rej:
                response.rejected.add(index=index, code=rej.code, detail=rej.detail)
                continue
            calls.append(call)
            positions.append(index)
        async with self._pool.acquire() as conn:
            settings = await self.tenant_settings(conn, tenant)
            # The tenant's tracking plan: blocked events are rejected here, flagged ones go on (counted).
            blocked = await self.apply_tracking_plan(conn, tenant, calls)
        if blocked:
            for j, (code, detail) in blocked.items():
                response.rejected.add(index=positions[j], code=code, detail=detail)
            keep = [j for j in range(len(calls)) if j not in blocked]
            calls = [calls[j] for j in keep]
            positions = [positions[j] for j in keep]
        profile_ids = [""] * len(request.events)
        for position, outcome in zip(positions, await self._lanes.store(tenant, settings, calls), strict=True):
            if outcome.code:
                response.rejected.add(index=position, code=outcome.code, detail=outcome.detail)
            elif outcome.duplicate:
                response.duplicates += 1
            else:
                response.accepted += 1
                profile_ids[position] = outcome.profile_id
        response.rejected.sort(key=lambda r: r.index)
        response.profile_ids.extend(profile_ids)
        return response

