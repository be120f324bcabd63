"""GetProfile, ListProfileEvents (and the profile write calls)."""

from __future__ import annotations

from datetime import datetime

import orjson

from identity.domain.calls import CALL_TYPES
from identity.grpc_api.base import Context, ServicerBase
from identity.repo import profiles as profile_repo
from mcloud.identity.v1 import identity_pb2
from mcloud_common.errors import InvalidArgument
from mcloud_common.grpc_server import tenant_id
from mcloud_common.ids import parse_uuid
from mcloud_common.timestamps import to_timestamp

_TYPE_ENUM = {getattr(identity_pb2, f"CALL_TYPE_{t.upper()}"): t for t in CALL_TYPES}
_TYPE_ENUM = {v: k for k, v in _TYPE_ENUM.items()}


class ProfilesApi(ServicerBase):
    async def GetProfile(self, request: identity_pb2.GetProfileRequest, context: Context):
        tenant = tenant_id(context)
        async with self._pool.acquire() as conn:
            profile_id = await self.resolve_key(conn, tenant, request)
            view = await profile_repo.get_profile(conn, tenant, profile_id)
        return identity_pb2.GetProfileResponse(profile=identity_pb2.Profile(
            id=view.id,
            identifiers=[identity_pb2.Identifier(type=t, value=v) for t, v in view.identifiers],
            traits_json=orjson.dumps(view.traits).decode(),
            tags=view.tags,
            lifecycle_stage=view.lifecycle_stage,
            computed_json=orjson.dumps(view.computed).decode(),
            created_at=to_timestamp(view.created_at),
            updated_at=to_timestamp(view.updated_at),
            merged_from=view.merged_from,
        ))

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

