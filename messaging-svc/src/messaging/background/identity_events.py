"""The identity-events consumer (group "messaging" on events.identity.*), once per event id in the
consumer's transaction:
- profile.identified: the traits (addresses, locale, time zone, personalisation) into the contact;
- consent.changed: the channel's marketing consent on the contact (other purposes ignored);
- profile.merged: the person's messaging data folded into the survivor;
- profile.erased: the person's messaging data deleted, the contact left as a tombstone;
- track "Order Completed": the order credited to the message the person last clicked (else opened)
  within the tenant's attribution window (repo/attribution.py), once per order.
Events about malformed tenants or profile ids are skipped."""

from __future__ import annotations

import functools

import asyncpg
import orjson
import redis.asyncio as aioredis

from mcloud.events.v1 import event_pb2, identity_events_pb2
from mcloud_common.bus import StreamConsumer
from mcloud_common.clock import Clock
from mcloud_common.ids import parse_uuid
from mcloud_common.logs import get_logger
from mcloud_common.runtime import Runtime
from mcloud_common.timestamps import from_timestamp
from messaging.domain.attribution import ORDER_EVENT
from messaging.repo import attribution, contacts, people

log = get_logger(__name__)

GROUP = "messaging"
CONSUMED = ("profile.identified", "consent.changed", "profile.merged", "profile.erased", "track")
_MARKETING = frozenset({"", "marketing"})
_STATES = frozenset({"granted", "denied", "withdrawn"})


class IdentityEvents:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def handle(self, event: event_pb2.Event, conn: asyncpg.Connection) -> None:
        tenant = event.tenant_id
        if parse_uuid(tenant) is None:
            return
        now = self._clock.now()
        if event.type == "profile.identified":
            identified = identity_events_pb2.ProfileIdentified()
            event.payload.Unpack(identified)
            pid = identified.profile_id or event.profile_id
            try:
                traits = orjson.loads(identified.traits_json or "{}")
            except orjson.JSONDecodeError:
                log.info("identified event with bad traits skipped", event_id=event.id)
                return
            if parse_uuid(pid) is not None and isinstance(traits, dict):
                await contacts.upsert_from_traits(conn, tenant, pid, traits, now)
        elif event.type == "consent.changed":
            changed = identity_events_pb2.ConsentChanged()
            event.payload.Unpack(changed)
            pid = changed.profile_id or event.profile_id
            state = changed.state.lower()
            if parse_uuid(pid) is not None and changed.purpose in _MARKETING and state in _STATES and changed.channel:
                await contacts.set_consent(conn, tenant, pid, changed.channel.lower(), state, now)
        elif event.type == "profile.merged":
            merged = identity_events_pb2.ProfileMerged()
            event.payload.Unpack(merged)
            if parse_uuid(merged.from_profile_id) is not None and parse_uuid(merged.into_profile_id) is not None:
                await people.merge(conn, tenant, merged.from_profile_id, merged.into_profile_id, now)
        elif event.type == "track":
            await self._order(event, conn, now)
        elif event.type == "profile.erased":
            erased = identity_events_pb2.ProfileErased()
            event.payload.Unpack(erased)
            pid = erased.profile_id or event.profile_id
            if parse_uuid(pid) is not None:
                await people.erase(conn, tenant, pid, now)

    async def _order(self, event: event_pb2.Event, conn: asyncpg.Connection, now) -> None:
        if event.name != ORDER_EVENT or parse_uuid(event.profile_id) is None:
            return
        try:
            props = orjson.loads(event.properties_json or "{}")
        except orjson.JSONDecodeError:
            props = {}
        ordered_at = from_timestamp(event.occurred_at) if event.HasField("occurred_at") else now
        await attribution.attribute_order(conn, event.tenant_id, event.profile_id, event_id=event.id,
                                          ordered_at=ordered_at, properties=props if isinstance(props, dict) else {},
                                          now=now)


def _accept(event: event_pb2.Event) -> bool:
    """Behaviour calls other than orders are acked without touching the database."""
    return event.type != "track" or event.name == ORDER_EVENT


def make_consumer(pool: asyncpg.Pool, redis: aioredis.Redis, clock: Clock, shards: int, *,
                  group: str = GROUP) -> StreamConsumer:
    """The consumer of identity's stream (group "messaging"; tests may use their own group)."""
    handler = IdentityEvents(clock)
    return StreamConsumer(redis=redis, pool=pool, group=group, producers=("identity",), shards=shards,
                          handler=functools.partial(IdentityEvents.handle, handler), types=CONSUMED,
                          accept=_accept)


async def install(runtime: Runtime, settings, **_kw) -> None:
    """Start the identity-events consumer (it stops with `runtime`)."""
    consumer = make_consumer(runtime.pool, runtime.redis, runtime.clock, settings.stream_shards)
    runtime.tasks.append(consumer.start())
