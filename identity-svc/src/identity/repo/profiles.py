"""Profile reads: by id (following merges) or by any identifier the person ever had."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from identity.repo.privacy import suppressed
from mcloud_common.errors import NotFound


@dataclass
class ProfileView:
    id: str
    identifiers: list[tuple[str, str]]
    traits: dict
    tags: list[str]
    lifecycle_stage: str
    computed: dict
    created_at: datetime
    updated_at: datetime
    merged_from: list[str]


async def survivor_of(conn: asyncpg.Connection, tenant_id: str, profile_id: str) -> asyncpg.Record | None:
    """(id, erased_at) of the profile at the end of `profile_id`'s merge chain (a merged profile
    points at the one it was merged into); None when the tenant has no such profile."""
    return await conn.fetchrow(
        """
        WITH RECURSIVE chain(id, merged_into, erased_at, depth) AS (
            SELECT id, merged_into, erased_at, 0 FROM profiles WHERE tenant_id = $1 AND id = $2::uuid
            UNION ALL
            SELECT p.id, p.merged_into, p.erased_at, c.depth + 1 FROM profiles p JOIN chain c ON p.id = c.merged_into
            WHERE p.tenant_id = $1 AND c.depth < 32
        )
        SELECT id::text AS id, erased_at FROM chain WHERE merged_into IS NULL
        """,
        tenant_id, profile_id,
    )


async def resolve_profile_id(conn: asyncpg.Connection, tenant_id: str, *, profile_id: str | None = None,
                             identifier: tuple[str, str] | None = None) -> str:
    """The surviving profile for an id or identifier; NotFound when the tenant has none."""
    if identifier is not None:
        found = await conn.fetchval(
            "SELECT profile_id::text FROM identifiers WHERE tenant_id = $1 AND type = $2 AND value = $3",
            tenant_id, *identifier,
        )
        if found is None:
            erased = await suppressed(conn, tenant_id, [identifier])
            raise NotFound(f"no profile with {identifier[0]} {identifier[1]!r}",
                           code="profile_erased" if erased else "profile_not_found")
        profile_id = found
    survivor = await survivor_of(conn, tenant_id, profile_id)
    if survivor is None:
        raise NotFound(f"no profile {profile_id}", code="profile_not_found")
    if survivor["erased_at"] is not None:  # the tombstone of an erased person (see repo/privacy.py)
        raise NotFound(f"profile {profile_id} was erased", code="profile_erased")
    return survivor["id"]


async def get_profile(conn: asyncpg.Connection, tenant_id: str, profile_id: str) -> ProfileView:
    row = await conn.fetchrow(
        """
        SELECT p.id::text AS id, p.traits, p.tags, p.lifecycle_stage, p.computed, p.created_at, p.updated_at,
               COALESCE((SELECT array_agg(ARRAY[i.type, i.value] ORDER BY i.type, i.value)
                         FROM identifiers i WHERE i.tenant_id = p.tenant_id AND i.profile_id = p.id),
                        '{}') AS identifiers,
               COALESCE((SELECT array_agg(m.from_profile::text ORDER BY m.id)
                         FROM merges m WHERE m.tenant_id = p.tenant_id AND m.into_profile = p.id
                           AND m.undone_at IS NULL),
                        '{}') AS merged_from
        FROM profiles p WHERE p.tenant_id = $1 AND p.id = $2::uuid
        """,
        tenant_id, profile_id,
    )
    if row is None:
        raise NotFound(f"no profile {profile_id}", code="profile_not_found")
    return ProfileView(
        id=row["id"], identifiers=[(t, v) for t, v in row["identifiers"]], traits=row["traits"],
        tags=list(row["tags"]), lifecycle_stage=row["lifecycle_stage"], computed=row["computed"],
        created_at=row["created_at"], updated_at=row["updated_at"], merged_from=list(row["merged_from"]),
    )


async def list_events(conn: asyncpg.Connection, tenant_id: str, profile_id: str, *, limit: int,
                      before: tuple[datetime, str] | None) -> list[asyncpg.Record]:
    """A profile's events (merges move events to the survivor, so these include merged history), newest first."""
    return await conn.fetch(
        """
        SELECT e.id::text AS id, e.type, e.name, e.properties, e.timestamp, e.channel, e.message_id
        FROM events e
        WHERE e.tenant_id = $1 AND e.profile_id = $2::uuid
          AND ($3::timestamptz IS NULL OR (e.timestamp, e.id) < ($3, $4::uuid))
        ORDER BY e.timestamp DESC, e.id DESC
        LIMIT $5
        """,
        tenant_id, profile_id, before[0] if before else None, before[1] if before else None, limit,
    )
