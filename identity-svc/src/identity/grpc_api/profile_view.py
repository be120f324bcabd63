"""Profile read model -> proto, shared by every RPC that answers with a profile."""

from __future__ import annotations

import asyncpg
import orjson

from identity.repo import profiles as profile_repo
from mcloud.identity.v1 import identity_pb2
from mcloud_common.timestamps import to_timestamp


async def profile_message(conn: asyncpg.Connection, tenant_id: str, profile_id: str) -> identity_pb2.Profile:
    view = await profile_repo.get_profile(conn, tenant_id, profile_id)
    return identity_pb2.Profile(
        id=view.id,
        identifiers=[identity_pb2.Identifier(type=t, value=v) for t, v in view.identifiers],
        traits_json=orjson.dumps(view.traits).decode(),
        tags=view.tags,
        lifecycle_stage=view.lifecycle_stage,
        computed_json=orjson.dumps(view.computed).decode(),
        created_at=to_timestamp(view.created_at),
        updated_at=to_timestamp(view.updated_at),
        merged_from=view.merged_from,
    )
