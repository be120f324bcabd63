"""Erasure, export, and suppression of erased identifiers.

A person is a merge family: the surviving profile and every profile merged into it (directly or
through a chain). Erasure deletes what the family's rows hold about the person and keeps tombstones:
the profile rows (blanked, erased_at set, so lookups answer "profile_erased") and one-way digests of
the identifiers (so events carrying them are refused on re-ingest).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from identity.repo.events import envelope
from mcloud.events.v1 import identity_events_pb2
from mcloud_common.bus import enqueue
from mcloud_common.errors import NotFound
from mcloud_common.timestamps import to_timestamp

Key = tuple[str, str]

# An export is one gRPC message (16 MiB at most): events beyond either cap are left out, with a note.
EXPORT_MAX_EVENTS = 100_000
EXPORT_MAX_EVENT_BYTES = 12 * 1024 * 1024
_EVENT_PAGE = 5_000


def identifier_digest(tenant_id: str, key: Key) -> bytes:
    """A one-way digest of an erased identifier (the value itself is not kept)."""
    return hashlib.sha256("\x1f".join((tenant_id, key[0], key[1])).encode()).digest()


async def suppressed(conn: asyncpg.Connection, tenant_id: str, keys: Iterable[Key]) -> set[Key]:
    """Which of `keys` belonged to an erased person (events carrying them are refused)."""
    by_digest = {identifier_digest(tenant_id, k): k for k in keys}
    if not by_digest:
        return set()
    rows = await conn.fetch(
        "SELECT digest FROM erased_identifiers WHERE tenant_id = $1 AND digest = ANY($2::bytea[])",
        tenant_id, list(by_digest),
    )
    return {by_digest[r["digest"]] for r in rows}


@dataclass(frozen=True)
class Person:
    survivor: str
    erased_at: datetime | None
    family: list[str]  # the survivor first, then the profiles merged into it


async def find_person(conn: asyncpg.Connection, tenant_id: str, profile_id: str) -> Person:
    """The person a profile id belongs to (any id of the family, erased or not); NotFound otherwise."""
    from identity.repo.profiles import survivor_of  # here: profiles imports this module

    row = await survivor_of(conn, tenant_id, profile_id)
    if row is None:
        raise NotFound(f"no profile {profile_id}", code="profile_not_found")
    family = await conn.fetch(
        """
        WITH RECURSIVE family(id, depth) AS (
            SELECT $2::uuid, 0
            UNION
            SELECT p.id, f.depth + 1 FROM profiles p JOIN family f ON p.merged_into = f.id
            WHERE p.tenant_id = $1 AND f.depth < 32
        )
        SELECT id::text AS id FROM family ORDER BY depth, id
        """,
        tenant_id, row["id"],
    )
    return Person(row["id"], row["erased_at"], list(dict.fromkeys(r["id"] for r in family)))


# ---- erase -------------------------------------------------------------------------------------


async def erase(conn: asyncpg.Connection, tenant_id: str, profile_id: str, *, at: datetime, shards: int) -> bool:
    """Erase the person `profile_id` belongs to and publish profile.erased for each profile of the
    family, in one transaction. False when the person was already erased (nothing is done again)."""
    from identity.repo.ingest import _LOCK, _profile_lock  # here: ingest imports this module

    async with conn.transaction():
        # The same exclusive profile locks merges take (ingest takes shared ones): no batch or merge
        # touches the family while it is erased. The family is read again under the locks, until a
        # merge that committed meanwhile has added no profile we do not hold.
        person = await find_person(conn, tenant_id, profile_id)
        locked: set[str] = set()
        while person.erased_at is None and not set(person.family) <= locked:
            missing = set(person.family) - locked
            await conn.execute(_LOCK, sorted({_profile_lock(p) for p in missing}))
            locked |= missing
            person = await find_person(conn, tenant_id, person.survivor)
        if person.erased_at is not None:
            return False
        family = person.family
        await _delete_identifiers(conn, tenant_id, family, at)
        for table in ("events", "consents", "consent_log", "dirty_profiles"):
            await conn.execute(f"DELETE FROM {table} WHERE tenant_id = $1 AND profile_id = ANY($2::uuid[])",
                               tenant_id, family)
        await conn.execute(
            """
            WITH gone AS (
                DELETE FROM segment_members WHERE tenant_id = $1 AND profile_id = ANY($2::uuid[])
                RETURNING segment_id
            ), n AS (SELECT segment_id, count(*) AS n FROM gone GROUP BY segment_id)
            UPDATE segments s SET member_count = GREATEST(s.member_count - n.n, 0)
            FROM n WHERE s.id = n.segment_id
            """,
            tenant_id, family,
        )
        # Merge history stays (profile ids only), without the identifier values it recorded.
        await conn.execute(
            """
            UPDATE merges SET moved_identifiers = '[]'
            WHERE tenant_id = $1 AND (from_profile = ANY($2::uuid[]) OR into_profile = ANY($2::uuid[]))
            """,
            tenant_id, family,
        )
        await conn.execute(
            """
            UPDATE profiles SET traits = '{}', traits_meta = '{}', computed = '{}', tags = '{}',
                   lifecycle_stage = 'potential', lifecycle_changed_at = NULL, erased_at = $3, updated_at = $3
            WHERE tenant_id = $1 AND id = ANY($2::uuid[])
            """,
            tenant_id, family, at,
        )
        requested = to_timestamp(at)
        await enqueue(conn, [
            envelope(tenant_id, "profile.erased", p, identity_events_pb2.ProfileErased(profile_id=p,
                                                                                     requested_at=requested), at=at)
            for p in family
        ], producer="identity", shards=shards)
    return True


async def _delete_identifiers(conn: asyncpg.Connection, tenant_id: str, family: list[str], at: datetime) -> None:
    gone = await conn.fetch(
        "DELETE FROM identifiers WHERE tenant_id = $1 AND profile_id = ANY($2::uuid[]) RETURNING type, value",
        tenant_id, family,
    )
    digests = sorted({identifier_digest(tenant_id, (r["type"], r["value"])) for r in gone})
    if digests:
        await conn.execute(
            """
            INSERT INTO erased_identifiers (tenant_id, digest, erased_at)
            SELECT $1, d, $3 FROM unnest($2::bytea[]) AS d ON CONFLICT DO NOTHING
            """,
            tenant_id, digests, at,
        )


# ---- export ------------------------------------------------------------------------------------


async def export(conn: asyncpg.Connection, tenant_id: str, survivor: str, *, at: datetime) -> bytes:
    """Everything held about the person whose surviving profile is `survivor`, as one JSON document
    (read in one repeatable-read snapshot)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        person = await find_person(conn, tenant_id, survivor)
        family = person.family
        profiles = await conn.fetch(
            """
            SELECT id::text AS id, merged_into::text AS merged_into, traits, traits_meta, tags, computed,
                   lifecycle_stage, lifecycle_changed_at, created_at, updated_at
            FROM profiles WHERE tenant_id = $1 AND id = ANY($2::uuid[])
            """,
            tenant_id, family,
        )
        by_id = {r["id"]: dict(r) for r in profiles}
        doc: dict[str, Any] = {
            "export_version": 1,
            "exported_at": at,
            "profile_id": person.survivor,
            "profile": by_id[person.survivor],
            "merged_profiles": [by_id[p] for p in family[1:] if p in by_id],
            "identifiers": await _records(conn, """
                SELECT type, value, profile_id::text AS profile_id, created_at FROM identifiers
                WHERE tenant_id = $1 AND profile_id = ANY($2::uuid[]) ORDER BY type, value""", tenant_id, family),
            "consents": await _records(conn, """
                SELECT profile_id::text AS profile_id, channel, purpose, state, source, at FROM consents
                WHERE tenant_id = $1 AND profile_id = ANY($2::uuid[]) ORDER BY channel, purpose""", tenant_id, family),
            "consent_log": await _records(conn, """
                SELECT profile_id::text AS profile_id, channel, purpose, state, source, at, recorded_at
                FROM consent_log WHERE tenant_id = $1 AND profile_id = ANY($2::uuid[]) ORDER BY id""",
                                          tenant_id, family),
            "segments": await _records(conn, """
                SELECT m.segment_id::text AS segment_id, s.name, m.profile_id::text AS profile_id, m.entered_at
                FROM segment_members m JOIN segments s ON s.id = m.segment_id
                WHERE m.tenant_id = $1 AND m.profile_id = ANY($2::uuid[]) ORDER BY s.name""", tenant_id, family),
            "merges": await _records(conn, """
                SELECT id::text AS id, from_profile::text AS from_profile_id, into_profile::text AS into_profile_id,
                       reason, actor, moved_identifiers, created_at, undone_at, undone_by
                FROM merges WHERE tenant_id = $1 AND (from_profile = ANY($2::uuid[]) OR into_profile = ANY($2::uuid[]))
                ORDER BY id""", tenant_id, family),
        }
        events, total, truncated = await _events(conn, tenant_id, family)
    doc["event_count"] = total
    doc["events_truncated"] = truncated
    if truncated:
        doc["note"] = (f"the newest {len(events)} of {total} events are included (an export holds at most "
                       f"{EXPORT_MAX_EVENTS} events or {EXPORT_MAX_EVENT_BYTES // (1024 * 1024)} MiB of them); "
                       "page through ListProfileEvents (GET /v1/profiles/{id}/events) for the older ones")
    doc["events"] = events
    return orjson.dumps(doc)


async def _records(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(sql, *args)]


async def _events(conn: asyncpg.Connection, tenant_id: str, family: list[str]
                  ) -> tuple[list[orjson.Fragment], int, bool]:
    """The family's events, newest first, as JSON built by PostgreSQL (never decoded here), paged by
    (timestamp, id); with the total and whether the caps cut the list short."""
    total = await conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1 AND profile_id = ANY($2::uuid[])",
                                tenant_id, family)
    out: list[orjson.Fragment] = []
    size = 0
    after: tuple[datetime, str] | None = None
    while len(out) < min(total, EXPORT_MAX_EVENTS):
        rows = await conn.fetch(
            """
            SELECT e.timestamp, e.id::text AS id, json_build_object(
                'id', e.id, 'profile_id', e.profile_id, 'type', e.type, 'name', e.name,
                'message_id', e.message_id, 'anonymous_id', e.anonymous_id, 'user_id', e.user_id,
                'channel', e.channel, 'timestamp', e.timestamp, 'received_at', e.received_at,
                'properties', e.properties, 'traits', e.traits, 'context', e.context)::text AS doc
            FROM events e
            WHERE e.tenant_id = $1 AND e.profile_id = ANY($2::uuid[])
              AND ($3::timestamptz IS NULL OR (e.timestamp, e.id) < ($3, $4::uuid))
            ORDER BY e.timestamp DESC, e.id DESC
            LIMIT $5
            """,
            tenant_id, family, after[0] if after else None, after[1] if after else None,
            min(_EVENT_PAGE, EXPORT_MAX_EVENTS - len(out)),
        )
        if not rows:
            break
        for r in rows:
            size += len(r["doc"])
            if size > EXPORT_MAX_EVENT_BYTES:
                return out, total, True
            out.append(orjson.Fragment(r["doc"]))
        after = (rows[-1]["timestamp"], rows[-1]["id"])
    return out, total, len(out) < total
