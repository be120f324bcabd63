"""The ingest hot path: one transaction per batch, set-based statements only (asyncpg).

dedupe message ids -> lock and read identifiers -> resolve (pure) -> write profiles, identifiers,
merges, events (COPY) and the outbox, all in one commit.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import orjson

from identity.domain.calls import Call, NoIdentity, clean_identifiers, identifiers_of, lookup_keys
from identity.domain.resolution import Key, Merge, ResolutionPlan, resolve
from identity.domain.settings import DEFAULT_SETTINGS, TenantSettings
from identity.repo import privacy, profile_updates, segments
from identity.repo.events import envelope
from mcloud.events.v1 import event_pb2, identity_events_pb2
from mcloud_common.bus import enqueue
from mcloud_common.ids import new_id, new_id_str
from mcloud_common.telemetry import inject_traceparent
from mcloud_common.timestamps import set_timestamp

EVENT_COLUMNS = ("id", "tenant_id", "profile_id", "origin_profile_id", "message_id", "type", "name", "anonymous_id",
                 "user_id", "properties", "traits", "context", "channel", "timestamp", "received_at")

_CHANNEL = {
    "web": event_pb2.CHANNEL_WEB, "app": event_pb2.CHANNEL_APP, "mini_program": event_pb2.CHANNEL_MINI_PROGRAM,
    "pos": event_pb2.CHANNEL_POS, "crm": event_pb2.CHANNEL_CRM, "ads": event_pb2.CHANNEL_ADS,
    "server": event_pb2.CHANNEL_SERVER,
}


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    profile_ids: dict[int, str] = field(default_factory=dict)  # index in `calls` -> profile
    rejected: dict[int, tuple[str, str]] = field(default_factory=dict)  # index in `calls` -> (code, detail)


def _lock_id(*parts: str) -> int:
    """A 63-bit advisory lock id for an identifier (tenant, type, value) or a profile ("profile", id)."""
    text = "\x1f".join(parts).encode()
    return zlib.crc32(text) | ((zlib.adler32(text) & 0x7FFFFFFF) << 32)


def _lock_key(tenant_id: str, key: Key) -> int:
    return _lock_id(tenant_id, key[0], key[1])


def _profile_lock(profile_id: str) -> int:
    return _lock_id("profile", profile_id)


_LOCK = "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k ORDER BY k"
_LOCK_SHARED = "SELECT pg_advisory_xact_lock_shared(k) FROM unnest($1::bigint[]) AS k ORDER BY k"
class _ErasedMeanwhile(Exception):
    """A person in the batch was erased while the batch waited for their lock: start again, so the
    suppression check refuses their events."""


# Values PostgreSQL refuses that validation did not foresee (class 22 data exceptions, 54000 limits)
UNSTORABLE = (asyncpg.DataError, asyncpg.exceptions.ProgramLimitExceededError)
RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError, _ErasedMeanwhile)
ATTEMPTS = 3


async def _known_identifiers(conn: asyncpg.Connection, tenant_id: str, keys: list[Key]) -> dict[Key, str]:
    rows = await conn.fetch(
        """
        SELECT i.type, i.value, i.profile_id::text AS profile_id
        FROM unnest($2::text[], $3::text[]) AS k(type, value)
        JOIN identifiers i ON i.tenant_id = $1 AND i.type = k.type AND i.value = k.value
        """,
        tenant_id, [k[0] for k in keys], [k[1] for k in keys],
    )
    return {(r["type"], r["value"]): r["profile_id"] for r in rows}


async def _profile_facts(conn: asyncpg.Connection, tenant_id: str, profiles: list[str]
                         ) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Identifiers per type held by each profile, and the profiles' creation order."""
    rows = await conn.fetch(
        """
        SELECT p.id::text AS id, i.type, count(i.value) AS n
        FROM profiles p
        LEFT JOIN identifiers i ON i.tenant_id = p.tenant_id AND i.profile_id = p.id
        WHERE p.tenant_id = $1 AND p.id = ANY($2::uuid[])
        GROUP BY p.id, i.type
        ORDER BY p.id
        """,
        tenant_id, profiles,
    )
    counts: dict[str, dict[str, int]] = {}
    created: dict[str, int] = {}
    for r in rows:
        created.setdefault(r["id"], len(created))  # UUIDv7 order is creation order
        held = counts.setdefault(r["id"], {})
        if r["type"]:
            held[r["type"]] = r["n"]
    return counts, created


def _envelope(tenant_id: str, call: Call, event_id: str, profile_id: str, trace: tuple[str, str]
              ) -> event_pb2.Event:
    ev = event_pb2.Event(
        id=event_id, tenant_id=tenant_id, type=call.type, profile_id=profile_id,
        anonymous_id=call.anonymous_id, user_id=call.user_id, source="identity",
        channel=_CHANNEL.get(call.channel, event_pb2.CHANNEL_UNSPECIFIED), name=call.name,
        message_id=call.message_id, properties_json=call.properties_json, context_json=call.context_json,
    )
    set_timestamp(ev.occurred_at, call.timestamp)
    set_timestamp(ev.received_at, call.received_at)
    ev.trace.traceparent, ev.trace.tracestate = trace
    return ev


async def _apply_plan(conn: asyncpg.Connection, tenant_id: str, plan: ResolutionPlan, settings: TenantSettings,
                      now: datetime) -> list[event_pb2.Event]:
    """Write the plan; returns the events the merges caused (profile.merged, lifecycle changes)."""
    if plan.new_profiles:
        await conn.execute(
            "INSERT INTO profiles (id, tenant_id) SELECT p, $1 FROM unnest($2::uuid[]) AS p",
            tenant_id, plan.new_profiles,
        )
    if plan.new_identifiers:
        await conn.execute(
            """
            INSERT INTO identifiers (tenant_id, type, value, profile_id)
            SELECT $1, t, v, p FROM unnest($2::text[], $3::text[], $4::uuid[]) AS x(t, v, p)
            ON CONFLICT DO NOTHING
            """,
            tenant_id, *map(list, zip(*plan.new_identifiers, strict=True)),
        )
    if plan.merges:
        _, events = await apply_merges(conn, tenant_id, plan.merges, reason="auto", actor="system",
                                       settings=settings, now=now, manual=False)
        return events
    return []


async def apply_merges(conn: asyncpg.Connection, tenant_id: str, merges: list[Merge], *, reason: str, actor: str,
                       settings: TenantSettings, now: datetime, manual: bool
                       ) -> tuple[list[int], list[event_pb2.Event]]:
    """Fold each from-profile into its into-profile: identifiers and events move (the moved identifiers
    are recorded so the merge can be undone), traits fold (the survivor's win), computed traits, tags,
    trait provenance and consents fold, the from-profile is marked merged. Returns the merge record
    ids and the events to publish (profile.merged with reason "manual" or "auto", then what the fold
    changed). Callers hold the profiles' exclusive locks."""
    froms = [m.from_profile for m in merges]
    intos = [m.into_profile for m in merges]
    moved = await conn.fetch(
        """
        WITH m(f, i) AS (SELECT * FROM unnest($2::uuid[], $3::uuid[])),
        upd AS (
            UPDATE identifiers SET profile_id = m.i FROM m
            WHERE identifiers.tenant_id = $1 AND identifiers.profile_id = m.f
            RETURNING m.f AS f, identifiers.type, identifiers.value
        )
        SELECT f::text AS f, jsonb_agg(jsonb_build_array(type, value) ORDER BY type, value) AS moved
        FROM upd GROUP BY f
        """,
        tenant_id, froms, intos,
    )
    moved_by = {r["f"]: r["moved"] for r in moved}
    await conn.execute(
        """
        WITH m(f, i) AS (SELECT * FROM unnest($2::uuid[], $3::uuid[]))
        UPDATE events SET profile_id = m.i FROM m
        WHERE events.tenant_id = $1 AND events.profile_id = m.f
        """,
        tenant_id, froms, intos,
    )
    # Every merged profile's traits fold into its survivor (several may merge into one: aggregate
    # first, an UPDATE ... FROM applies only one source row per target); newer profiles over older,
    # the survivor's own traits on top, so the known person's data wins conflicts.
    await conn.execute(
        """
        WITH m(f, i) AS (SELECT * FROM unnest($2::uuid[], $3::uuid[])),
        kv AS (
            SELECT DISTINCT ON (m.i, e.key) m.i AS target, e.key, e.value
            FROM m JOIN profiles src ON src.tenant_id = $1 AND src.id = m.f,
                 jsonb_each(src.traits) AS e(key, value)
            ORDER BY m.i, e.key, src.id DESC
        ),
        folded AS (SELECT target, jsonb_object_agg(key, value) AS traits FROM kv GROUP BY target)
        UPDATE profiles p SET traits = folded.traits || p.traits, updated_at = now()
        FROM folded
        WHERE p.tenant_id = $1 AND p.id = folded.target
        """,
        tenant_id, froms, intos,
    )
    await conn.execute(
        """
        WITH m(f, i) AS (SELECT * FROM unnest($2::uuid[], $3::uuid[]))
        UPDATE profiles SET merged_into = m.i, updated_at = now() FROM m
        WHERE profiles.tenant_id = $1 AND profiles.id = m.f
        """,
        tenant_id, froms, intos,
    )
    ids = await conn.fetch(
        """
        INSERT INTO merges (tenant_id, from_profile, into_profile, reason, actor, moved_identifiers)
        SELECT $1, f, i, $4, $5, mv FROM unnest($2::uuid[], $3::uuid[], $6::jsonb[]) WITH ORDINALITY AS m(f, i, mv, n)
        ORDER BY n
        RETURNING id
        """,
        tenant_id, froms, intos, reason, actor,
        [orjson.dumps(moved_by.get(f, [])).decode() for f in froms],  # JSON text: nested lists are not arrays
    )
    kind = "manual" if manual else "auto"
    events = [envelope(tenant_id, "profile.merged", m.into_profile, identity_events_pb2.ProfileMerged(
        from_profile_id=m.from_profile, into_profile_id=m.into_profile, reason=kind), at=now) for m in merges]
    events += await profile_updates.fold_merged(conn, tenant_id, settings, list(zip(froms, intos, strict=True)), now)
    await segments.mark_dirty(conn, tenant_id, [*froms, *intos])
    return [r["id"] for r in ids], events


async def _plan(conn: asyncpg.Connection, tenant_id: str, settings: TenantSettings, event_keys: list[list[Key]],
                keys: list[Key]) -> tuple[ResolutionPlan, dict[Key, str]]:
    known = await _known_identifiers(conn, tenant_id, keys)
    batch = [identifiers_of(k, known, settings) for k in event_keys]
    # Facts (identifier counts, age) are needed only for profiles of events that may merge or gain
    # identifiers; an event whose identifiers are all known on one profile resolves without them.
    needed: set[str] = set()
    for ks in batch:
        owners = {known.get(k) for k in ks}
        if None in owners or len(owners) > 1:
            needed.update(o for o in owners if o is not None)
    counts, created = await _profile_facts(conn, tenant_id, sorted(needed)) if needed else ({}, {})
    plan = resolve(batch, settings=settings, known=known, counts=counts, created=created, new_id=new_id_str)
    return plan, known


async def ingest(conn: asyncpg.Connection, tenant_id: str, calls: list[Call], *, shards: int,
                 settings: TenantSettings = DEFAULT_SETTINGS, now: datetime | None = None) -> IngestResult:
    """Store valid calls once each (by message id), resolve identities, publish via the outbox.
    A deadlock with a concurrent batch is retried (the whole transaction, a few times)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await _ingest_once(conn, tenant_id, calls, settings, now or datetime.now(UTC), shards=shards)
        except RETRYABLE:
            if attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def store(conn: asyncpg.Connection, tenant_id: str, calls: list[Call], *, shards: int,
                settings: TenantSettings = DEFAULT_SETTINGS, now: datetime | None = None) -> IngestResult:
    """`ingest`, except that one value the database refuses does not sink the valid calls beside it:
    the calls are then stored one at a time and only the refused ones are rejected (unstorable_value)."""
    try:
        return await ingest(conn, tenant_id, calls, shards=shards, settings=settings, now=now)
    except UNSTORABLE:
        pass
    merged = IngestResult()
    for j, call in enumerate(calls):
        try:
            one = await ingest(conn, tenant_id, [call], shards=shards, settings=settings, now=now)
        except UNSTORABLE as exc:
            merged.rejected[j] = ("unstorable_value", f"a value cannot be stored: {type(exc).__name__}")
            continue
        merged.accepted += one.accepted
        merged.duplicates += one.duplicates
        if 0 in one.profile_ids:
            merged.profile_ids[j] = one.profile_ids[0]
        if 0 in one.rejected:
            merged.rejected[j] = one.rejected[0]
    return merged


async def _resolve_locked(conn: asyncpg.Connection, tenant_id: str, settings: TenantSettings,
                          event_keys: list[list[Key]], keys: list[Key]) -> ResolutionPlan:
    """Resolve against what is known, taking only the locks the plan needs.

    Most batches touch known identifiers of existing people: they take SHARED locks on the profiles
    their events go to, so a merge of one of those profiles (EXCLUSIVE lock) waits for them or they for
    it. A plan that creates identifiers or merges profiles locks the contested identifiers and the
    profiles it changes EXCLUSIVELY (sorted ids, one statement: no lock-order deadlocks), re-reads and
    resolves again, so concurrent batches creating or merging the same person serialise."""
    plan, known = await _plan(conn, tenant_id, settings, event_keys, keys)
    if not (plan.new_identifiers or plan.merges):
        existing = sorted(set(plan.event_profiles))
        await conn.execute(_LOCK_SHARED, sorted({_profile_lock(p) for p in existing}))
        moved, erased = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE merged_into IS NOT NULL), count(*) FILTER (WHERE erased_at IS NOT NULL)"
            " FROM profiles WHERE tenant_id = $1 AND id = ANY($2::uuid[])",
            tenant_id, existing,
        )
        if erased:
            raise _ErasedMeanwhile
        if not moved:
            return plan
        # a merge committed while we planned: read again (its survivors are what we lock now)
        plan, known = await _plan(conn, tenant_id, settings, event_keys, keys)
    merging = {p for m in plan.merges for p in (m.from_profile, m.into_profile)}
    contested = [k for k in keys if k not in known or known[k] in merging]
    # every existing profile the batch writes to, so an erase or merge cannot interleave
    changed = merging | ({p for _, _, p in plan.new_identifiers} | set(plan.event_profiles)) - set(plan.new_profiles)
    await conn.execute(_LOCK, sorted({_lock_key(tenant_id, k) for k in contested}
                                     | {_profile_lock(p) for p in changed}))
    if await privacy.suppressed(conn, tenant_id, keys):
        raise _ErasedMeanwhile  # their identifiers are gone: without this they would make a new profile
    plan, _ = await _plan(conn, tenant_id, settings, event_keys, keys)
    return plan


async def _ingest_once(conn: asyncpg.Connection, tenant_id: str, calls: list[Call], settings: TenantSettings,
                       now: datetime, *, shards: int) -> IngestResult:
    result = IngestResult()
    if not calls:
        return result
    # 0. Clean identifiers (pure); a call left with none is refused, not stored.
    cleaned: dict[int, list[Key]] = {}
    for i, c in enumerate(calls):
        keys, problems = clean_identifiers(c, settings)
        if keys:
            cleaned[i] = keys
        else:
            rej = NoIdentity(problems)
            result.rejected[i] = (rej.code, rej.detail)
    async with conn.transaction():
        # 1. Identifiers of erased people are not taken in again.
        erased = await privacy.suppressed(conn, tenant_id, {k for ks in cleaned.values() for k in lookup_keys(ks)})
        if erased:
            for i in [i for i, ks in cleaned.items() if any(k in erased for k in lookup_keys(ks))]:
                del cleaned[i]
                result.rejected[i] = ("erased_identifier", "an identifier of this event belongs to an erased person")
        # 2. Dedupe: within the batch, then against what was stored before (sorted: index locks are
        #    taken in one order by every batch).
        first_index: dict[str, int] = {}
        for i in cleaned:
            first_index.setdefault(calls[i].message_id, i)
        fresh = await conn.fetch(
            """
            INSERT INTO message_ids (tenant_id, message_id)
            SELECT $1, m FROM unnest($2::text[]) AS m
            ON CONFLICT DO NOTHING RETURNING message_id
            """,
            tenant_id, sorted(first_index),
        )
        fresh_ids = {r["message_id"] for r in fresh}
        todo = [i for i in cleaned if calls[i].message_id in fresh_ids and first_index[calls[i].message_id] == i]
        result.duplicates = len(cleaned) - len(todo)
        if not todo:
            return result
        todo_calls = [calls[i] for i in todo]
        event_keys = [cleaned[i] for i in todo]

        # 3. Resolve (with the locks the plan needs), then apply.
        keys = list(dict.fromkeys(k for ks in event_keys for k in lookup_keys(ks)))
        plan = await _resolve_locked(conn, tenant_id, settings, event_keys, keys)
        merge_events = await _apply_plan(conn, tenant_id, plan, settings, now)

        # 4. Traits, computed traits, lifecycle; segment re-evaluation is queued.
        changes = await profile_updates.after_ingest(conn, tenant_id, settings, todo_calls, plan.event_profiles, now)
        await segments.mark_dirty(conn, tenant_id, plan.event_profiles)

        # 5. Events (COPY) and their envelopes (outbox), same transaction.
        trace = inject_traceparent()
        rows = []
        envelopes = []
        for c, p in zip(todo_calls, plan.event_profiles, strict=True):
            event_id = new_id()
            rows.append((event_id, tenant_id, p, p, c.message_id, c.type, c.name, c.anonymous_id, c.user_id,
                         c.properties_json, c.traits_json, c.context_json, c.channel, c.timestamp, c.received_at))
            envelopes.append(_envelope(tenant_id, c, str(event_id), p, trace))
        envelopes.extend(merge_events)
        envelopes.extend(changes)
        await conn.copy_records_to_table("events", records=rows, columns=EVENT_COLUMNS)
        await enqueue(conn, envelopes, producer="identity", shards=shards)
        result.accepted = len(todo)
        result.profile_ids = {todo[j]: p for j, p in enumerate(plan.event_profiles)}
    return result
