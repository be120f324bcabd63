"""A tenant's recommendation settings (defaults until a tenant stores its own)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import orjson

from mcloud.recommend.v1 import recommend_pb2 as pb
from mcloud_common.timestamps import set_timestamp
from recommend.domain.config import Config


def _spec(value) -> dict:
    return orjson.loads(value) if isinstance(value, str | bytes) else (value or {})


async def get_stamped(conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> tuple[Config, str]:
    """The settings and a stamp that changes whenever they do."""
    r = await conn.fetchrow("SELECT spec, updated_at FROM tenant_settings WHERE tenant_id = $1", tenant)
    if r is None:
        return Config(), "0"
    return Config.from_json(_spec(r["spec"])), str(int(r["updated_at"].timestamp() * 1e6))


async def get_pb(conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> pb.RecommendSettings:
    r = await conn.fetchrow("SELECT spec, updated_at FROM tenant_settings WHERE tenant_id = $1", tenant)
    out = (Config.from_json(_spec(r["spec"])) if r else Config()).to_pb()
    if r is not None:
        set_timestamp(out.updated_at, r["updated_at"])
    return out


async def put(conn: asyncpg.Connection | asyncpg.Pool, tenant: str, config: Config, now: datetime
              ) -> pb.RecommendSettings:
    """Store `config`; unchanged settings keep their updated_at (a retry changes nothing)."""
    spec = config.to_json()
    r = await conn.fetchrow(
        """
        INSERT INTO tenant_settings (tenant_id, spec, updated_at) VALUES ($1, $2::jsonb, $3)
        ON CONFLICT (tenant_id) DO UPDATE SET spec = EXCLUDED.spec, updated_at = EXCLUDED.updated_at
            WHERE tenant_settings.spec IS DISTINCT FROM EXCLUDED.spec
        RETURNING updated_at
        """, tenant, spec, now)
    out = config.to_pb()
    at = r["updated_at"] if r else await conn.fetchval(
        "SELECT updated_at FROM tenant_settings WHERE tenant_id = $1", tenant)
    set_timestamp(out.updated_at, at)
    return out
