"""Journeys reacting to what people do (group "journey" on identity's, loyalty's and messaging's
streams), exactly once per event id in the consumer's transaction:

- entries: journeys whose entry is this event (with its `where` filters and entry key), a loyalty
  tier change, or a segment entry/exit;
- running enrollments of the person: a `wait_for_event` step waiting for it (with `match_key`) moves
  on at once; the journey's goal marks the enrollment converted (and ends it when `exit`); an exit
  criterion ends it;
- profile.merged: the merged-away person's enrollments move to the survivor, and where the survivor
  already runs the same journey the duplicate exits ("merged"), so nobody gets a step twice;
- profile.erased: the person's enrollments and trace are deleted.
Names of track events are matched on `name`, bus events on `type`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from datetime import datetime

import asyncpg
import orjson
import redis.asyncio as aioredis

from journey.domain import definition as grammar
from journey.domain.definition import parse_duration
from journey.repo import enrollments as repo
from journey.repo import events as journey_events
from journey.repo import journeys as journeys_repo
from journey.settings import JourneySettings
from mcloud.events.v1 import (  # noqa: F401 - recommend_events registers its payload types
    event_pb2,
    identity_events_pb2,
    loyalty_events_pb2,
    messaging_events_pb2,
    recommend_events_pb2,
)
from mcloud_common.bus import StreamConsumer, enqueue, event_properties
from mcloud_common.clock import Clock
from mcloud_common.errors import DomainError
from mcloud_common.ids import parse_uuid
from mcloud_common.logs import get_logger
from mcloud_common.runtime import Runtime
from mcloud_common.telemetry import current_traceparent

log = get_logger(__name__)

GROUP = "journey"
PRODUCERS = ("identity", "loyalty", "messaging", "recommend")
ALWAYS = frozenset({"profile.merged", "profile.erased", "tier.changed", "segment.entered", "segment.exited",
                    "message.opened"})
REFRESH_SECONDS = 5.0

_ACTIVE = """
    SELECT j.tenant_id, j.id, j.status, j.published_version, v.definition
    FROM journeys j JOIN journey_versions v
      ON v.tenant_id = j.tenant_id AND v.journey_id = j.id AND v.version = j.published_version
    WHERE j.status IN ('active', 'paused')
"""


def _name(event: event_pb2.Event) -> str:
    return event.name if event.type == "track" else event.type



class Published:
    """A published definition: as stored (the engine walks it) and as parsed (its conditions)."""

    def __init__(self, text: str) -> None:
        self.raw = orjson.loads(text)
        self.parsed = grammar.validate(text).definition


class Journeys:
    """Published definitions of active and paused journeys, per tenant, re-read every few seconds."""

    def __init__(self) -> None:
        self.by_tenant: dict[str, list[tuple[asyncpg.Record, Published]]] = {}
        self.names: frozenset[str] = ALWAYS
        self._loaded = 0.0

    async def refresh(self, conn: asyncpg.Connection | asyncpg.Pool, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._loaded < REFRESH_SECONDS:
            return
        by_tenant: dict[str, list] = {}
        names = set(ALWAYS)
        for r in await conn.fetch(_ACTIVE):
            definition = orjson.loads(r["definition"])
            by_tenant.setdefault(str(r["tenant_id"]), []).append((r, Published(r["definition"])))
            entry = definition.get("entry", {})
            names.update(n for n in (entry.get("event"), (definition.get("goal") or {}).get("event")) if n)
            names.update(c["event"] for c in definition.get("exit_criteria", []) if c.get("event"))
            names.update(s["event"] for s in definition.get("steps", []) if s.get("type") == "wait_for_event")
        if frozenset(names) != self.names:
            log.info("journey triggers reloaded", events=len(names))
        self.by_tenant, self.names, self._loaded = by_tenant, frozenset(names), time.monotonic()


class Reactions:
    def __init__(self, clock: Clock, shards: int) -> None:
        self._clock = clock
        self._shards = shards
        self.journeys = Journeys()

    def accept(self, event: event_pb2.Event) -> bool:
        return _name(event) in self.journeys.names

    async def handle(self, event: event_pb2.Event, conn: asyncpg.Connection) -> None:
        tenant = event.tenant_id
        if parse_uuid(tenant) is None:
            return
        await self.journeys.refresh(conn)
        now = self._clock.now()
        if event.type == "profile.merged":
            merged = identity_events_pb2.ProfileMerged()
            event.payload.Unpack(merged)
            await merge(conn, tenant, merged.from_profile_id, merged.into_profile_id, now)
            return
        if event.type == "profile.erased":
            erased = identity_events_pb2.ProfileErased()
            event.payload.Unpack(erased)
            await erase(conn, tenant, erased.profile_id or event.profile_id)
            return
        profile = event.profile_id
        if parse_uuid(profile) is None:
            return
        name, props = _name(event), event_properties(event)
        if event.type == "message.opened":
            await opened(conn, tenant, event)
        if event.type == "segment.exited":
            membership = identity_events_pb2.SegmentMembershipChanged()
            event.payload.Unpack(membership)
            props = {**props, "segment_id": membership.segment_id}
        await self._running(conn, tenant, profile, name, props, now, event.id)
        for journey, published in self.journeys.by_tenant.get(tenant, []):
            if journey["status"] != "active":
                continue
            definition = published.raw
            entry = definition.get("entry", {})
            if not self._enters(entry, published.parsed.entry.where, event, name, props):
                continue
            key = str(props.get(entry["key"], "")) if entry.get("key") else ""
            try:
                async with conn.transaction():
                    await repo.enroll(conn, tenant, journey, definition, repo.Entry(
                        profile, key, props, f"event:{event.id}", entry["type"]), now, self._shards, event.id)
            except DomainError as exc:
                log.info("entry refused", journey_id=str(journey["id"]), code=exc.code)

    @staticmethod
    def _enters(entry: dict, where, event: event_pb2.Event, name: str, props: dict) -> bool:
        kind = entry.get("type")
        if kind == "event":
            return entry.get("event") == name and grammar.matches(where, props)
        if kind == "tier_change" and event.type == "tier.changed":
            changed = loyalty_events_pb2.TierChanged()
            event.payload.Unpack(changed)
            direction = entry.get("direction", "upgrade")
            return (direction in ("any", changed.direction)) and entry.get("to") in (None, changed.to_tier_code)
        if kind == "segment" and event.type in ("segment.entered", "segment.exited"):
            membership = identity_events_pb2.SegmentMembershipChanged()
            event.payload.Unpack(membership)
            wanted = entry.get("on", "enter") == "enter"
            return membership.segment_id == entry.get("segment_id") and membership.entered == wanted
        return False

    async def _running(self, conn: asyncpg.Connection, tenant: str, profile: str, name: str, props: dict,
                       now: datetime, event_id: str = "") -> None:
        rows = await conn.fetch(
            "SELECT id, journey_id, version, profile_id, step_id, waiting_for, context, entered_at, converted_at, "
            "holdout FROM enrollments "
            "WHERE tenant_id = $1 AND profile_id = $2 AND status = 'active'", tenant, profile)
        if not rows:
            return
        definitions = {(str(j["id"]), j["published_version"]): p for j, p in self.journeys.by_tenant.get(tenant, [])}
        for r in rows:
            definition = definitions.get((str(r["journey_id"]), r["version"]))
            if definition is None:
                definition = Published(await conn.fetchval(
                    "SELECT definition FROM journey_versions WHERE tenant_id = $1 AND journey_id = $2 AND version = $3",
                    tenant, r["journey_id"], r["version"]))
            await self._react(conn, tenant, r, definition, name, props, now, event_id)

    async def _react(self, conn: asyncpg.Connection, tenant: str, r: asyncpg.Record, published: Published,
                     name: str, props: dict, now: datetime, event_id: str = "") -> None:
        definition, parsed = published.raw, published.parsed
        for criterion in parsed.exit_criteria:
            left = criterion.segment_left
            if (criterion.event == name and grammar.matches(criterion.where, props)) or (
                    left and name == "segment.exited" and props.get("segment_id") == left):
                await _end(conn, tenant, r, "exited", "exit_criteria", now, self._shards)
                return
        goal = definition.get("goal") or {}
        if goal.get("event") == name and r["converted_at"] is None and grammar.matches(parsed.goal.where, props):
            within = goal.get("within")
            if within is None or now <= r["entered_at"] + parse_duration(within):
                await conn.execute("UPDATE enrollments SET converted_at = $3, updated_at = $3 WHERE tenant_id = $1 "
                                   "AND id = $2", tenant, r["id"], now)
                await repo.log(conn, tenant, [(r["id"], r["journey_id"], r["version"], "goal", "goal", "converted",
                                               r["holdout"])], now)
                await journey_events.converted(conn, tenant, r, now, self._shards, trigger_event_id=event_id,
                                               value_minor=_minor(props), currency=str(props.get("currency") or ""))
                if goal.get("exit", True):
                    await _end(conn, tenant, r, "exited", "goal_reached", now, self._shards)
                    return
        if r["waiting_for"] == name:
            step = next((s for s in definition["steps"] if s["id"] == r["step_id"]), {})
            key = step.get("match_key")
            if grammar.matches(getattr(parsed.steps.get(r["step_id"]), "where", None), props) and (
                    not key or str(props.get(key, "")) == str((r["context"] or {}).get(key, ""))):
                await conn.execute(
                    "UPDATE enrollments SET arrived = true, waiting_for = '', due_at = $3, updated_at = $3, "
                    "traceparent = $5 WHERE tenant_id = $1 AND id = $2 AND status = 'active' AND waiting_for = $4",
                    tenant, r["id"], now, name, current_traceparent())


async def opened(conn: asyncpg.Connection, tenant: str, event: event_pb2.Event) -> None:
    """A message a journey sent was opened: conditions `{"opened": step}` of that enrollment hold."""
    payload = messaging_events_pb2.MessageOpened()
    event.payload.Unpack(payload)
    ref = payload.message
    if parse_uuid(ref.enrollment_id) is None or not ref.step_id:
        return
    await conn.execute(
        """
        UPDATE enrollments SET context = jsonb_set(context, '{_opened}',
            coalesce(context->'_opened', '[]'::jsonb) || to_jsonb($3::text))
        WHERE tenant_id = $1 AND id = $2 AND NOT coalesce(context->'_opened', '[]'::jsonb) ? $3
        """, tenant, ref.enrollment_id, ref.step_id)


async def _end(conn: asyncpg.Connection, tenant: str, r: asyncpg.Record, status: str, reason: str,
               now: datetime, shards: int) -> None:
    ended = await conn.execute(
        "UPDATE enrollments SET status = $3, exit_reason = $4, ended_at = $5, updated_at = $5, due_at = NULL "
        "WHERE tenant_id = $1 AND id = $2 AND status = 'active'", tenant, r["id"], status, reason, now)
    if ended.endswith(" 0"):
        return
    await repo.log(conn, tenant, [(r["id"], r["journey_id"], r["version"], r["step_id"], "exit", reason,
                                   r["holdout"])], now)
    await enqueue(conn, [journey_events.exited_event(tenant, r, reason, r["step_id"], now)], producer="journey",
                  shards=shards)


def _minor(props: dict) -> int:
    """An order goal's value in minor units (Segment's decimal `total`/`revenue`), 0 when none."""
    for key in ("total", "revenue", "value"):
        value = props.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return round(value * 100)
    return 0


async def merge(conn: asyncpg.Connection, tenant: str, from_id: str, into_id: str, now: datetime) -> None:
    """The merged-away person's enrollments belong to the survivor; a journey both run keeps the
    survivor's enrollment and ends the other ("merged"), so no step is done twice."""
    if parse_uuid(from_id) is None or parse_uuid(into_id) is None or from_id == into_id:
        return
    await conn.execute(
        """
        UPDATE enrollments f SET status = 'exited', exit_reason = 'merged', ended_at = $4, updated_at = $4,
            due_at = NULL
        WHERE f.tenant_id = $1 AND f.profile_id = $2 AND f.status = 'active'
          AND EXISTS (SELECT 1 FROM enrollments i WHERE i.tenant_id = $1 AND i.profile_id = $3
                      AND i.journey_id = f.journey_id AND i.entry_key = f.entry_key AND i.status = 'active')
        """, tenant, from_id, into_id, now)
    # keyed and finished enrollments move as they are (the unique keys of the survivor win)
    await conn.execute(
        """
        UPDATE enrollments f SET profile_id = $3, updated_at = $4
        WHERE f.tenant_id = $1 AND f.profile_id = $2
          AND NOT EXISTS (SELECT 1 FROM enrollments i WHERE i.tenant_id = $1 AND i.profile_id = $3
                          AND i.journey_id = f.journey_id AND i.entry_key = f.entry_key
                          AND (f.entry_key <> '' OR (i.status = 'active' AND f.status = 'active')))
        """, tenant, from_id, into_id, now)


async def erase(conn: asyncpg.Connection, tenant: str, profile_id: str) -> None:
    if parse_uuid(profile_id) is None:
        return
    await conn.execute("DELETE FROM step_log WHERE tenant_id = $1 AND enrollment_id IN "
                       "(SELECT id FROM enrollments WHERE tenant_id = $1 AND profile_id = $2)", tenant, profile_id)
    await conn.execute("DELETE FROM enrollments WHERE tenant_id = $1 AND profile_id = $2", tenant, profile_id)


def make_consumer(pool: asyncpg.Pool, redis: aioredis.Redis, clock: Clock, shards: int, *,
                  group: str = GROUP) -> tuple[StreamConsumer, Reactions]:
    reactions = Reactions(clock, shards)
    consumer = StreamConsumer(redis=redis, pool=pool, group=group, producers=PRODUCERS, shards=shards,
                              handler=functools.partial(Reactions.handle, reactions), accept=reactions.accept)
    return consumer, reactions


class TriggerWatch:
    """Re-reads the live journeys' triggers when one is published, paused, resumed or archived
    (NOTIFY from any replica, heard on a pooled connection held while the service runs), and every
    REFRESH_SECONDS anyway: an event that arrives right after a publish must not be skipped for a
    trigger not yet known."""

    def __init__(self, pool: asyncpg.Pool, journeys: Journeys) -> None:
        self._pool = pool
        self._journeys = journeys
        self._tasks: set[asyncio.Task] = set()

    def _notified(self, *_args: object) -> None:
        task = asyncio.get_running_loop().create_task(self._journeys.refresh(self._pool, force=True))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def listen(self) -> None:
        """Hold a LISTEN until cancelled (the connection goes back to the pool then, so the pool can
        close); a lost connection is replaced, and the periodic refresh covers the gap."""
        while True:
            try:
                async with self._pool.acquire() as conn:
                    await conn.add_listener(journeys_repo.JOURNEYS_CHANGED, self._notified)
                    try:
                        while not conn.is_closed():  # noqa: ASYNC110 (polls a connection, not a flag)
                            await asyncio.sleep(REFRESH_SECONDS)
                    finally:
                        with contextlib.suppress(Exception):
                            await conn.remove_listener(journeys_repo.JOURNEYS_CHANGED, self._notified)
            except Exception:
                log.warning("cannot listen for journey changes; refreshing periodically", exc_info=True)
                await asyncio.sleep(REFRESH_SECONDS)


async def install(runtime: Runtime, settings: JourneySettings) -> None:
    consumer, reactions = make_consumer(runtime.pool, runtime.redis, runtime.clock, settings.stream_shards)
    watch = TriggerWatch(runtime.pool, reactions.journeys)
    await reactions.journeys.refresh(runtime.pool, force=True)
    runtime.tasks.append(asyncio.create_task(watch.listen(), name="journey-trigger-watch"))
    runtime.every(REFRESH_SECONDS, lambda: reactions.journeys.refresh(runtime.pool, force=True),
                  name="journey-definitions")
    runtime.tasks.append(consumer.start())
