"""Segment storage and evaluation."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg


async def mark_dirty(conn: asyncpg.Connection, tenant_id: str, profile_ids: Iterable[str]) -> None:
    """Queue profiles for segment re-evaluation (called by ingest and every profile-changing call)."""
    ids = sorted(set(profile_ids))
    if ids:
        await conn.execute(
            """
            INSERT INTO dirty_profiles (tenant_id, profile_id) SELECT $1, p FROM unnest($2::uuid[]) AS p
            ON CONFLICT DO NOTHING
            """,
            tenant_id, ids,
        )
