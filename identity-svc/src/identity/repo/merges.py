"""Explicit, audited merges and their undoing (split), and the merge history of a profile.

A merge moves identifiers and events to the survivor and records which identifiers moved; the
merged profile's row stays (merged_into set, its own traits kept). Undoing a merge therefore brings
the old profile back as it was: its identifiers, the events first stored under it (and under
profiles merged into it), the events that came later carrying its identifiers, and its traits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from identity.domain.resolution import Key, Merge
from identity.domain.settings import TenantSettings
from identity.repo import segments
from identity.repo.events import envelope
from identity.repo.ingest import _LOCK, _profile_lock, apply_merges
from identity.repo.profiles import resolve_profile_id
from mcloud.events.v1 import identity_events_pb2
from mcloud_common.bus import enqueue
from mcloud_common.errors import FailedPrecondition, InvalidArgument, NotFound
from mcloud_common.ids import new_id_str


@dataclass
class MergeRow:
    id: str
    from_profile: str
    into_profile: str
    reason: str
    actor: str
    merged_at: datetime
    undone_at: datetime | None
    moved: list[Key]


async def _lock_profiles(conn: asyncpg.Connection, *profile_ids: str) -> None:
    await conn.execute(_LOCK, sorted({_profile_lock(p) for p in profile_ids}))


async def merge(conn: asyncpg.Connection, tenant_id: str, from_id: str, into_id: str, *, reason: str, actor: str,
                settings: TenantSettings, now: datetime, shards: int) -> str:
    """Merge two profiles (both may be identified: this is the audited override). Returns the survivor."""
    async with conn.transaction():
        source = await resolve_profile_id(conn, tenant_id, profile_id=from_id)
        target = await resolve_profile_id(conn, tenant_id, profile_id=into_id)
        if source == target:
            raise FailedPrecondition("the two profiles are already one", code="already_merged")
        await _lock_profiles(conn, source, target)
        # re-check under the locks: a concurrent merge may have moved either
        if (await resolve_profile_id(conn, tenant_id, profile_id=source) != source
                or await resolve_profile_id(conn, tenant_id, profile_id=target) != target):
            raise FailedPrecondition("a profile changed while merging; retry", code="concurrent_merge")
        _, events = await apply_merges(conn, tenant_id, [Merge(source, target)], reason=reason or "manual",
                                       actor=actor or "api", settings=settings, now=now, manual=True)
        await enqueue(conn, events, producer="identity", shards=shards)
    return target


async def _family(conn: asyncpg.Connection, tenant_id: str, root: str) -> list[str]:
    """`root` and every profile currently merged into it, directly or through a chain."""
    rows = await conn.fetch(
        """
        WITH RECURSIVE fam(id) AS (
            SELECT $2::uuid
            UNION SELECT p.id FROM profiles p JOIN fam ON p.merged_into = fam.id WHERE p.tenant_id = $1
        )
        SELECT id::text AS id FROM fam
        """,
        tenant_id, root,
    )
    return [r["id"] for r in rows]


async def undo_merge(conn: asyncpg.Connection, tenant_id: str, merge_id: str, *, actor: str, shards: int
                     ) -> tuple[str, str, list[Key]]:
    """Undo one merge. Returns (survivor, restored profile, identifiers moved back)."""
    if not merge_id.isdigit():
        raise InvalidArgument("merge_id is not one ListMerges returned", code="invalid_merge_id")
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT from_profile::text AS f, into_profile::text AS i, moved_identifiers, undone_at, created_at "
            "FROM merges WHERE tenant_id = $1 AND id = $2",
            tenant_id, int(merge_id),
        )
        if row is None:
            raise NotFound(f"no merge {merge_id}", code="merge_not_found")
        if row["undone_at"] is not None:
            raise FailedPrecondition(f"merge {merge_id} was already undone", code="merge_already_undone")
        restored = row["f"]
        survivor = await resolve_profile_id(conn, tenant_id, profile_id=row["i"])
        await _lock_profiles(conn, restored, survivor)
        moved = [(t, v) for t, v in row["moved_identifiers"]]
        back = await conn.fetch(
            """
            UPDATE identifiers SET profile_id = $2
            FROM unnest($4::text[], $5::text[]) AS k(t, v)
            WHERE identifiers.tenant_id = $1 AND identifiers.type = k.t AND identifiers.value = k.v
              AND identifiers.profile_id = $3
            RETURNING identifiers.type, identifiers.value
            """,
            tenant_id, restored, survivor, [t for t, _ in moved], [v for _, v in moved],
        )
        await conn.execute(
            "UPDATE profiles SET merged_into = NULL, updated_at = now() WHERE tenant_id = $1 AND id = $2",
            tenant_id, restored,
        )
        family = await _family(conn, tenant_id, restored)
        returned = [(r["type"], r["value"]) for r in back]
        await _move_events(conn, tenant_id, survivor, restored, returned, origins=family, since=row["created_at"])
        await conn.execute(
            "UPDATE merges SET undone_at = now(), undone_by = $3 WHERE tenant_id = $1 AND id = $2",
            tenant_id, int(merge_id), actor or "api",
        )
        await _split_done(conn, tenant_id, survivor, restored, returned, shards=shards)
    return survivor, restored, returned


async def split_identifiers(conn: asyncpg.Connection, tenant_id: str, profile_id: str, keys: list[Key], *,
                            reason: str, actor: str, shards: int) -> tuple[str, str]:
    """Move `keys` (and the events that carried them) from the profile to a new one."""
    async with conn.transaction():
        source = await resolve_profile_id(conn, tenant_id, profile_id=profile_id)
        await _lock_profiles(conn, source)
        held = {(r["type"], r["value"]) for r in await conn.fetch(
            "SELECT type, value FROM identifiers WHERE tenant_id = $1 AND profile_id = $2", tenant_id, source)}
        missing = [k for k in keys if k not in held]
        if missing:
            raise FailedPrecondition(f"identifier {missing[0][0]}:{missing[0][1]} is not on profile {source}",
                                     code="identifier_not_on_profile")
        if held <= set(keys):
            raise InvalidArgument("a split must leave at least one identifier on the profile",
                                  code="split_takes_everything")
        created = new_id_str()
        await conn.execute("INSERT INTO profiles (id, tenant_id) VALUES ($1, $2)", created, tenant_id)
        await conn.execute(
            """
            UPDATE identifiers SET profile_id = $2
            FROM unnest($4::text[], $5::text[]) AS k(t, v)
            WHERE identifiers.tenant_id = $1 AND identifiers.type = k.t AND identifiers.value = k.v
              AND identifiers.profile_id = $3
            """,
            tenant_id, created, source, [t for t, _ in keys], [v for _, v in keys],
        )
        await _move_events(conn, tenant_id, source, created, keys, origins=[], since=None)
        await conn.execute(
            """
            INSERT INTO merges (tenant_id, from_profile, into_profile, reason, actor, moved_identifiers, undone_at,
                                undone_by)
            VALUES ($1, $2, $3, $4, $5, $6, now(), $5)
            """,
            tenant_id, created, source, f"split: {reason}" if reason else "split", actor or "api",
            orjson.dumps([list(k) for k in keys]).decode(),
        )
        await _split_done(conn, tenant_id, source, created, keys, shards=shards)
    return source, created


async def _move_events(conn: asyncpg.Connection, tenant_id: str, source: str, target: str, keys: list[Key], *,
                       origins: list[str], since: datetime | None) -> None:
    """Events of `source` go to `target` when first stored under one of `origins`, or when they carry
    one of `keys` as their user id, or as their anonymous id with no user id (an event naming a user
    who stays is theirs), received after `since` if given."""
    anon = [v for t, v in keys if t == "anonymous_id"]
    users = [v for t, v in keys if t == "user_id"]
    await conn.execute(
        """
        UPDATE events SET profile_id = $3
        WHERE tenant_id = $1 AND profile_id = $2
          AND (origin_profile_id = ANY($4::uuid[])
               OR (($7::timestamptz IS NULL OR received_at >= $7)
                   AND (user_id = ANY($6::text[]) OR (anonymous_id = ANY($5::text[]) AND user_id = ''))))
        """,
        tenant_id, source, target, origins, anon, users, since,
    )


async def _split_done(conn: asyncpg.Connection, tenant_id: str, source: str, created: str, keys: list[Key], *,
                      shards: int) -> None:
    await segments.mark_dirty(conn, tenant_id, [source, created])
    payload = identity_events_pb2.ProfileSplit(profile_id=source, new_profile_id=created,
                                               moved_identifiers=[f"{t}:{v}" for t, v in keys])
    await enqueue(conn, [envelope(tenant_id, "profile.split", source, payload)], producer="identity", shards=shards)


async def history(conn: asyncpg.Connection, tenant_id: str, profile_id: str) -> list[MergeRow]:
    """Merges into the profile's family (and splits out of it), oldest first."""
    family = await _family(conn, tenant_id, profile_id)
    rows = await conn.fetch(
        """
        SELECT id, from_profile::text AS f, into_profile::text AS i, reason, actor, created_at, undone_at,
               moved_identifiers
        FROM merges
        WHERE tenant_id = $1 AND (into_profile = ANY($2::uuid[]) OR from_profile = ANY($2::uuid[]))
        ORDER BY id
        """,
        tenant_id, family,
    )
    return [MergeRow(str(r["id"]), r["f"], r["i"], r["reason"], r["actor"], r["created_at"], r["undone_at"],
                     [(t, v) for t, v in r["moved_identifiers"]]) for r in rows]
