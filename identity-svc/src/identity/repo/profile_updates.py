"""What an ingested batch changes on profiles besides identity: traits (source priority and
recency), computed traits, lifecycle stage. Called by repo.ingest inside the batch transaction,
after identity resolution, with the events in batch order and the profile each went to.

Cost per batch, whatever its size: profiles with trait writes or computed-trait events are read
once (`FOR UPDATE`: ingest holds only shared locks on existing profiles, so two batches for one
person must not both read-modify-write) and written once; every other profile of the batch gets
last_seen_at moved by one statement that only writes rows whose value is over an hour old. A batch
of plain page views of people seen within the hour writes nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import orjson

from identity.domain.calls import Call
from identity.domain.computed import (
    Activity,
    apply_activity,
    event_kinds,
    lifecycle_stage,
    merge_computed,
    rfm,
    seen,
)
from identity.domain.settings import TenantSettings
from identity.domain.traits import TraitWrite, apply_writes, iso
from identity.repo.events import envelope
from identity.repo.segments import mark_dirty
from mcloud.events.v1 import event_pb2, identity_events_pb2
from mcloud_common.bus import enqueue
from mcloud_common.errors import FailedPrecondition, NotFound
from mcloud_common.telemetry import inject_traceparent

# last_seen_at of a profile with nothing else to update is rewritten only when this much older.
LAST_SEEN_GRANULARITY = timedelta(hours=1)
UNKNOWN_SOURCE = "unknown"

_READ = """
    SELECT id::text AS id, traits, traits_meta, computed, lifecycle_stage
    FROM profiles WHERE tenant_id = $1 AND id = ANY($2::uuid[])
    ORDER BY id FOR UPDATE
"""
_WRITE = """
    UPDATE profiles p SET traits = COALESCE(x.traits, p.traits),
                          traits_meta = COALESCE(x.meta, p.traits_meta),
                          computed = COALESCE(x.computed, p.computed),
                          lifecycle_stage = COALESCE(x.stage, p.lifecycle_stage),
                          lifecycle_changed_at = CASE WHEN x.stage IS NULL THEN p.lifecycle_changed_at ELSE $2 END,
                          updated_at = now()
    FROM unnest($3::uuid[], $4::jsonb[], $5::jsonb[], $6::jsonb[], $7::text[]) AS x(id, traits, meta, computed, stage)
    WHERE p.tenant_id = $1 AND p.id = x.id
"""
_TOUCH = """
    UPDATE profiles p SET computed = jsonb_set(p.computed, '{last_seen_at}', to_jsonb(x.at)), updated_at = now()
    FROM unnest($2::uuid[], $3::text[], $4::text[]) AS x(id, at, stale_before)
    WHERE p.tenant_id = $1 AND p.id = x.id
      AND (p.computed->>'last_seen_at' IS NULL OR p.computed->>'last_seen_at' < x.stale_before)
"""


def lifecycle_event(tenant_id: str, profile_id: str, from_stage: str, to_stage: str, at: datetime,
                    trace: tuple[str, str] | None = None) -> event_pb2.Event:
    return envelope(tenant_id, "lifecycle.changed", profile_id, identity_events_pb2.LifecycleChanged(
        profile_id=profile_id, from_stage=from_stage, to_stage=to_stage), at=at, trace=trace)


def identified_event(tenant_id: str, profile_id: str, traits: dict, at: datetime) -> event_pb2.Event:
    return envelope(tenant_id, "profile.identified", profile_id, identity_events_pb2.ProfileIdentified(
        profile_id=profile_id, traits_json=orjson.dumps(traits).decode()), at=at)


def _properties(call: Call) -> dict:
    # validated as a JSON object by the API before ingest; parsed only for the events that need it
    value = orjson.loads(call.properties_json or "{}")
    return value if isinstance(value, dict) else {}


async def after_ingest(conn: asyncpg.Connection, tenant_id: str, settings: TenantSettings, calls: Sequence[Call],
                       profiles: Sequence[str], now: datetime) -> list[event_pb2.Event]:
    """Apply the batch to traits/computed/lifecycle; return the events to publish (profile.identified
    when an identify changed trait values, lifecycle.changed when a stage changed)."""
    kinds = event_kinds(settings.computed_events)
    writes: dict[str, list[TraitWrite]] = {}
    activity: dict[str, list[Activity]] = {}
    last_seen: dict[str, datetime] = {}
    for c, p in zip(calls, profiles, strict=True):
        at = min(c.timestamp, now)  # a client clock in the future must not pin a value forever
        if p not in last_seen or at > last_seen[p]:
            last_seen[p] = at
        if c.type == "identify" and c.traits:
            source = c.channel or UNKNOWN_SOURCE
            writes.setdefault(p, []).extend(TraitWrite(k, v, source, at) for k, v in c.traits.items())
        elif c.type == "track" and c.name in kinds:
            activity.setdefault(p, []).append(Activity(kinds[c.name], _properties(c), at, c.channel))
    loaded = sorted(writes.keys() | activity.keys())
    events = await _update(conn, tenant_id, settings, loaded, writes, activity, last_seen, now) if loaded else []
    rest = sorted(last_seen.keys() - set(loaded))
    if rest:
        await conn.execute(_TOUCH, tenant_id, rest, [iso(last_seen[p]) for p in rest],
                           [iso(last_seen[p] - LAST_SEEN_GRANULARITY) for p in rest])
    return events


async def _update(conn: asyncpg.Connection, tenant_id: str, settings: TenantSettings, ids: list[str],
                  writes: dict[str, list[TraitWrite]], activity: dict[str, list[Activity]],
                  last_seen: dict[str, datetime], now: datetime) -> list[event_pb2.Event]:
    rank = settings.source_rank
    trace = inject_traceparent()  # one batch, one trace context for all its events
    events: list[event_pb2.Event] = []
    out_ids: list[str] = []
    out_traits: list[dict | None] = []
    out_meta: list[dict | None] = []
    out_computed: list[dict | None] = []
    out_stage: list[str | None] = []
    for row in await conn.fetch(_READ, tenant_id, ids):
        p = row["id"]
        traits = meta = None
        if p in writes:
            result = apply_writes(row["traits"], row["traits_meta"], writes[p], rank)
            traits = result.traits if result.changed else None
            meta = result.meta if result.meta_changed else None
            if traits is not None:  # messaging and journeys learn contact data and traits from this
                events.append(identified_event(tenant_id, p, traits, now))
        computed = dict(row["computed"])
        ordered = False
        for a in activity.get(p, ()):
            ordered = apply_activity(computed, a) or ordered
        seen(computed, last_seen[p])
        stage = None
        if ordered:
            score = rfm(computed, now)
            if score is not None:
                computed["rfm"] = score
            new_stage = lifecycle_stage(computed, now, settings.lifecycle)
            if new_stage != row["lifecycle_stage"]:
                stage = new_stage
                events.append(lifecycle_event(tenant_id, p, row["lifecycle_stage"], new_stage, now, trace))
        computed_out = computed if computed != row["computed"] else None
        if traits is None and meta is None and computed_out is None and stage is None:
            continue
        out_ids.append(p)
        out_traits.append(traits)
        out_meta.append(meta)
        out_computed.append(computed_out)
        out_stage.append(stage)
    if out_ids:
        await conn.execute(_WRITE, tenant_id, now, out_ids, out_traits, out_meta, out_computed, out_stage)
    return events


async def update_profile(conn: asyncpg.Connection, tenant_id: str, profile_id: str, *, writes: Sequence[TraitWrite],
                         add_tags: Sequence[str], remove_tags: Sequence[str], settings: TenantSettings,
                         shards: int, now: datetime) -> bool:
    """UpdateProfile on a surviving profile, in the caller's transaction: trait writes under the
    source rules, tags added then removed. True when anything changed (the profile is then marked
    dirty for segments, and profile.identified published when trait values changed)."""
    row = await conn.fetchrow(
        "SELECT traits, traits_meta, tags, erased_at FROM profiles WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        tenant_id, profile_id,
    )
    if row is None:
        raise NotFound(f"no profile {profile_id}", code="profile_not_found")
    if row["erased_at"] is not None:
        raise FailedPrecondition("the profile was erased", code="profile_erased")
    result = apply_writes(row["traits"], row["traits_meta"], writes, settings.source_rank)
    removed = set(remove_tags)
    tags = [t for t in dict.fromkeys([*row["tags"], *add_tags]) if t not in removed]
    tags_changed = tags != list(row["tags"])
    if not (result.changed or result.meta_changed or tags_changed):
        return False
    await conn.execute(
        "UPDATE profiles SET traits = $3, traits_meta = $4, tags = $5, updated_at = now()"
        " WHERE tenant_id = $1 AND id = $2",
        tenant_id, profile_id, result.traits, result.meta, tags,
    )
    if result.changed:
        await enqueue(conn, [identified_event(tenant_id, profile_id, result.traits, now)],
                      producer="identity", shards=shards)
    await mark_dirty(conn, tenant_id, [profile_id])
    return True


async def fold_merged(conn: asyncpg.Connection, tenant_id: str, settings: TenantSettings,
                      merges: Sequence[tuple[str, str]], now: datetime) -> list[event_pb2.Event]:
    """Fold what the profile features keep about each merged-away profile into its survivor, for a
    merge's transaction (before or after merged_into is set; `merges` are (from, into) pairs with
    `into` the survivor): computed traits add up (domain.computed.merge_computed), provenance of the
    traits that came over, tags, and consents (per channel and purpose the latest `at` wins).
    Returns lifecycle.changed for survivors whose stage the fold changed. The merged-away rows keep
    their own state, so undoing the merge gives it back (the survivor's sums are not reduced)."""
    if not merges:
        return []
    ids = sorted({p for pair in merges for p in pair})
    rows = {r["id"]: r for r in await conn.fetch(
        "SELECT id::text AS id, traits_meta, tags, computed, lifecycle_stage FROM profiles"
        " WHERE tenant_id = $1 AND id = ANY($2::uuid[]) ORDER BY id FOR UPDATE", tenant_id, ids)}
    state: dict[str, dict] = {}
    for from_id, into_id in merges:
        src, dst = rows.get(from_id), rows.get(into_id)
        if src is None or dst is None:
            continue
        cur = state.setdefault(into_id, {"meta": dict(dst["traits_meta"]), "tags": list(dst["tags"]),
                                         "computed": dict(dst["computed"])})
        cur["meta"] = {**src["traits_meta"], **cur["meta"]}
        cur["tags"] = list(dict.fromkeys([*cur["tags"], *src["tags"]]))
        cur["computed"] = merge_computed(cur["computed"], src["computed"], now)
    events: list[event_pb2.Event] = []
    stages: list[str | None] = []
    for into_id, cur in state.items():
        before = rows[into_id]["lifecycle_stage"]
        stage = lifecycle_stage(cur["computed"], now, settings.lifecycle)
        stages.append(stage if stage != before else None)
        if stage != before:
            events.append(lifecycle_event(tenant_id, into_id, before, stage, now))
    survivors = list(state)
    if survivors:
        await conn.execute(
            """
            UPDATE profiles p SET traits_meta = x.meta, computed = x.computed,
                   tags = ARRAY(SELECT jsonb_array_elements_text(x.tags)),
                   lifecycle_stage = COALESCE(x.stage, p.lifecycle_stage),
                   lifecycle_changed_at = CASE WHEN x.stage IS NULL THEN p.lifecycle_changed_at ELSE $2 END,
                   updated_at = now()
            FROM unnest($3::uuid[], $4::jsonb[], $5::jsonb[], $6::text[], $7::jsonb[])
                 AS x(id, meta, computed, stage, tags)
            WHERE p.tenant_id = $1 AND p.id = x.id
            """,
            tenant_id, now, survivors, [state[s]["meta"] for s in survivors],
            [state[s]["computed"] for s in survivors], stages,
            [orjson.dumps(state[s]["tags"]).decode() for s in survivors],  # JSON text: a list would be an array
        )
    await conn.execute(
        """
        INSERT INTO consents (tenant_id, profile_id, channel, purpose, state, source, at)
        SELECT DISTINCT ON (m.i, c.channel, c.purpose) $1, m.i, c.channel, c.purpose, c.state, c.source, c.at
        FROM unnest($2::uuid[], $3::uuid[]) AS m(f, i)
        JOIN consents c ON c.tenant_id = $1 AND c.profile_id = m.f
        ORDER BY m.i, c.channel, c.purpose, c.at DESC
        ON CONFLICT (tenant_id, profile_id, channel, purpose) DO UPDATE
        SET state = excluded.state, source = excluded.source, at = excluded.at WHERE consents.at < excluded.at
        """,
        tenant_id, [f for f, _ in merges], [i for _, i in merges],
    )
    return events
