"""Background work of the profiles area inside the identity process:

- the lifecycle pass (hourly): customers whose last order is older than their tenant's
  churn_after_days become `churned` (lifecycle.changed published), and RFM recency is re-scored as
  days pass. Set-based, in chunks, each chunk one transaction with its events.
- the consumer of other services' events that change a profile: loyalty (tier.changed,
  member.enrolled), messaging (message.opened / message.clicked engagement, message.unsubscribed
  consent withdrawal) and recommend (intent.locked: the intent_item / intent_category computed traits).
  Exactly once per event id (StreamConsumer), in the consumer's transaction.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import redis.asyncio as aioredis

from identity.domain.computed import CHURNED, RECENCY_DAYS
from identity.domain.settings import LifecycleThresholds
from identity.domain.traits import iso
from identity.repo import consent as consent_repo
from identity.repo.profile_updates import lifecycle_event
from identity.repo.profiles import resolve_profile_id
from identity.repo.segments import mark_dirty
from identity.settings import IdentitySettings
from mcloud.events.v1 import event_pb2, loyalty_events_pb2, messaging_events_pb2, recommend_events_pb2
from mcloud_common.bus import StreamConsumer, enqueue
from mcloud_common.clock import Clock
from mcloud_common.errors import NotFound
from mcloud_common.ids import parse_uuid
from mcloud_common.logs import get_logger
from mcloud_common.runtime import Runtime
from mcloud_common.telemetry import inject_traceparent
from mcloud_common.timestamps import from_timestamp

log = get_logger(__name__)

PASS_INTERVAL_SECONDS = 3600
CHUNK = 2000
GROUP = "identity"
PRODUCERS = ("loyalty", "messaging", "recommend")
CONSUMED = ("tier.changed", "member.enrolled", "message.opened", "message.clicked", "message.unsubscribed",
            "intent.locked")

# Customers with orders whose last order is at least their tenant's churn_after_days old (the
# default threshold when the tenant never saved settings). `lifecycle_stage <> 'potential'` lets the
# partial index of migration 0004 serve the scan.
_CHURN = """
    WITH due AS (
        SELECT p.id, p.lifecycle_stage AS from_stage
        FROM profiles p LEFT JOIN tenant_settings ts ON ts.tenant_id = p.tenant_id
        WHERE p.merged_into IS NULL AND p.erased_at IS NULL AND p.lifecycle_stage <> 'potential'
          AND p.lifecycle_stage IN ('first_purchase', 'repeat', 'retained')
          AND (p.computed->>'last_order_at')::timestamptz <= $1::timestamptz
              - make_interval(days => COALESCE((ts.settings #>> '{lifecycle,churn_after_days}')::int, $2))
        ORDER BY p.id LIMIT $3
        FOR UPDATE OF p SKIP LOCKED
    )
    UPDATE profiles p SET lifecycle_stage = 'churned', lifecycle_changed_at = $1, updated_at = now()
    FROM due WHERE p.id = due.id
    RETURNING p.tenant_id::text AS tenant_id, p.id::text AS id, due.from_stage
"""
# RFM recency as time passes: r = 5 - number of RECENCY_DAYS breakpoints the whole days since the
# last order exceed (identity.domain.computed.recency_score, same breakpoints passed in).
_RECENCY = """
    WITH scored AS (
        SELECT p.id, 5 - (SELECT count(*) FROM unnest($2::int[]) AS b
                          WHERE greatest(floor(extract(epoch FROM
                                    $1::timestamptz - (p.computed->>'last_order_at')::timestamptz) / 86400), 0) > b
                         )::int AS r
        FROM profiles p
        WHERE p.merged_into IS NULL AND p.erased_at IS NULL AND p.lifecycle_stage <> 'potential'
          AND p.computed ? 'rfm' AND p.computed ? 'last_order_at'
    ),
    due AS (
        SELECT p.id, s.r FROM profiles p JOIN scored s ON s.id = p.id
        WHERE (p.computed #>> '{rfm,r}')::int IS DISTINCT FROM s.r
        ORDER BY p.id LIMIT $3
        FOR UPDATE OF p SKIP LOCKED
    )
    UPDATE profiles p
    SET computed = jsonb_set(p.computed, '{rfm}', p.computed->'rfm' || jsonb_build_object(
            'r', due.r, 'score', due.r::text || (p.computed #>> '{rfm,f}') || (p.computed #>> '{rfm,m}'))),
        updated_at = now()
    FROM due WHERE p.id = due.id
    RETURNING p.tenant_id::text AS tenant_id, p.id::text AS id
"""


@dataclass
class PassResult:
    churned: int = 0
    rescored: int = 0


async def _dirty(conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> None:
    by_tenant: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_tenant[r["tenant_id"]].append(r["id"])
    for tenant, ids in by_tenant.items():
        await mark_dirty(conn, tenant, ids)


async def lifecycle_pass(pool: asyncpg.Pool, clock: Clock, shards: int) -> PassResult:
    """Churn customers past their threshold and re-score RFM recency, as of `clock.now()`."""
    now = clock.now()
    result = PassResult()
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CHURN, now, LifecycleThresholds().churn_after_days, CHUNK)
            trace = inject_traceparent()
            await enqueue(conn, [lifecycle_event(r["tenant_id"], r["id"], r["from_stage"], CHURNED, now, trace)
                                 for r in rows], producer="identity", shards=shards)
            await _dirty(conn, rows)
        result.churned += len(rows)
        if len(rows) < CHUNK:
            break
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_RECENCY, now, list(RECENCY_DAYS), CHUNK)
            await _dirty(conn, rows)
        result.rescored += len(rows)
        if len(rows) < CHUNK:
            break
    if result.churned or result.rescored:
        log.info("lifecycle pass", churned=result.churned, rescored=result.rescored)
    return result


# --- events of other services ---------------------------------------------------------------------

_SET = """
    UPDATE profiles SET computed = computed || $3::jsonb, updated_at = now()
    WHERE tenant_id = $1 AND id = $2 AND erased_at IS NULL
"""
_ENROLLED = """
    UPDATE profiles
    SET computed = computed || jsonb_build_object('loyalty_member', true)
                   || CASE WHEN $3 <> '' AND NOT computed ? 'loyalty_tier'
                           THEN jsonb_build_object('loyalty_tier', $3::text) ELSE '{}'::jsonb END,
        updated_at = now()
    WHERE tenant_id = $1 AND id = $2 AND erased_at IS NULL
"""
# last_engaged_at: fixed-width UTC ISO text, so the later of two is the greater string.
_ENGAGED = """
    UPDATE profiles
    SET computed = computed
                   || jsonb_build_object('last_engaged_at', greatest(coalesce(computed->>'last_engaged_at', ''), $3))
                   || CASE WHEN $4 <> '' THEN jsonb_build_object($4::text, coalesce((computed->>$4)::bigint, 0) + 1)
                           ELSE '{}'::jsonb END,
        updated_at = now()
    WHERE tenant_id = $1 AND id = $2 AND erased_at IS NULL
"""


def _occurred(event: event_pb2.Event) -> datetime:
    stamp = event.occurred_at if event.HasField("occurred_at") else event.received_at
    return from_timestamp(stamp)


async def _survivor(conn: asyncpg.Connection, event: event_pb2.Event, *candidates: str) -> str | None:
    """The surviving profile of the event's person (it may have been merged since), None if unknown."""
    profile_id = next((c for c in candidates if c), "")
    if parse_uuid(event.tenant_id) is None or parse_uuid(profile_id) is None:
        log.warning("event without a usable tenant or profile id", event_id=event.id, event_type=event.type)
        return None
    try:
        return await resolve_profile_id(conn, event.tenant_id, profile_id=profile_id)
    except NotFound:
        log.info("event about an unknown profile ignored", event_id=event.id, event_type=event.type,
                 profile_id=profile_id)
        return None


async def _changed(conn: asyncpg.Connection, tenant: str, profile_id: str, status: str) -> None:
    if not status.endswith(" 0"):
        await mark_dirty(conn, tenant, [profile_id])


async def handle_event(event: event_pb2.Event, conn: asyncpg.Connection, *, shards: int) -> None:
    """Apply one loyalty or messaging event to the profile it is about (types not listed: ignored)."""
    tenant = event.tenant_id
    if event.type == "tier.changed":
        tier = loyalty_events_pb2.TierChanged()
        event.payload.Unpack(tier)
        if (p := await _survivor(conn, event, event.profile_id, tier.profile_id)) and tier.to_tier_code:
            status = await conn.execute(_SET, tenant, p, {"loyalty_tier": tier.to_tier_code, "loyalty_member": True})
            await _changed(conn, tenant, p, status)
    elif event.type == "member.enrolled":
        member = loyalty_events_pb2.MemberEnrolled()
        event.payload.Unpack(member)
        if p := await _survivor(conn, event, event.profile_id, member.profile_id):
            await _changed(conn, tenant, p, await conn.execute(_ENROLLED, tenant, p, member.tier_code))
    elif event.type in ("message.opened", "message.clicked"):
        engaged = (messaging_events_pb2.MessageOpened() if event.type == "message.opened"
                   else messaging_events_pb2.MessageClicked())
        event.payload.Unpack(engaged)
        if p := await _survivor(conn, event, event.profile_id, engaged.message.profile_id):
            counter = ""
            if engaged.message.channel == "email":
                counter = "email_opens" if event.type == "message.opened" else "email_clicks"
            status = await conn.execute(_ENGAGED, tenant, p, iso(_occurred(event)), counter)
            await _changed(conn, tenant, p, status)
    elif event.type == "intent.locked":
        locked = recommend_events_pb2.IntentLocked()
        event.payload.Unpack(locked)
        if locked.profile_id and (p := await _survivor(conn, event, event.profile_id, locked.profile_id)):
            status = await conn.execute(_SET, tenant, p, {
                "intent_item": locked.item_id, "intent_category": locked.category,
                "intent_locked_at": iso(_occurred(event))})
            await _changed(conn, tenant, p, status)
    elif event.type == "message.unsubscribed":
        unsub = messaging_events_pb2.MessageUnsubscribed()
        event.payload.Unpack(unsub)
        channel = unsub.channel or unsub.message.channel
        if channel not in consent_repo.CHANNELS:
            log.warning("unsubscribe from an unknown channel ignored", event_id=event.id, channel=channel)
            return
        if p := await _survivor(conn, event, event.profile_id, unsub.profile_id, unsub.message.profile_id):
            change = consent_repo.ConsentRecord(channel, consent_repo.DEFAULT_PURPOSE, "withdrawn", "messaging",
                                                _occurred(event))
            await consent_repo.record(conn, tenant, p, change, shards=shards)


def make_consumer(pool: asyncpg.Pool, redis: aioredis.Redis, shards: int, *, group: str = GROUP) -> StreamConsumer:
    """The consumer of the loyalty and messaging streams (group "identity"; tests use their own)."""
    return StreamConsumer(redis=redis, pool=pool, group=group, producers=PRODUCERS, shards=shards,
                          handler=functools.partial(handle_event, shards=shards), types=CONSUMED)


async def install(runtime: Runtime, settings: IdentitySettings) -> None:
    """Start the hourly lifecycle pass and the loyalty/messaging consumer (they stop with `runtime`)."""
    shards = settings.stream_shards
    runtime.every(PASS_INTERVAL_SECONDS, lambda: lifecycle_pass(runtime.pool, runtime.clock, shards),
                  name="profiles-lifecycle")
    runtime.tasks.append(make_consumer(runtime.pool, runtime.redis, shards).start())
