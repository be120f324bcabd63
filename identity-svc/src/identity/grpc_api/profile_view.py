"""Profile read model -> proto, shared by every RPC that answers with a profile."""

from __future__ import annotations

import asyncpg
import orjson

from identity.repo import consent as consent_repo
from identity.repo import profiles as profile_repo
from mcloud.identity.v1 import identity_pb2
from mcloud_common.timestamps import to_timestamp


async def profile_message(conn: asyncpg.Connection, tenant_id: str, profile_id: str) -> identity_pb2.Profile:
    view = await profile_repo.get_profile(conn, tenant_id, profile_id)
    consents = await consent_repo.list_consents(conn, tenant_id, profile_id)
    segment_ids = await conn.fetch(
        "SELECT segment_id::text AS id FROM segment_members WHERE tenant_id = $1 AND profile_id = $2"
        " ORDER BY segment_id", tenant_id, profile_id)
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
        consents=[identity_pb2.Consent(channel=c.channel, purpose=c.purpose, source=c.source, at=to_timestamp(c.at),
                                       state=identity_pb2.ConsentState.Value(f"CONSENT_STATE_{c.state.upper()}"))
                  for c in consents],
        segment_ids=[r["id"] for r in segment_ids],
    )
