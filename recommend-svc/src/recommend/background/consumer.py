"""The events consumer (group "recommend" on events.identity.* and events.messaging.*), once per event id
in the consumer's transaction:
- track "Product Viewed" / "Product Added" / "Product Removed" / "Product Clicked" / "Product Dismissed"
  and product pages (`page` with a product_id): view, add-to-cart, remove-from-cart, click, dismiss;
- track "Order Completed": a purchase per product line;
- message.clicked with an item_id: a click (the email scenario), attributed to its recommendation;
- profile.merged: the person's data folded into the survivor; profile.erased: deleted.
A stream read's feedback is stored together, per tenant; merges and erasures keep their place."""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import UTC

import asyncpg
import orjson
import redis.asyncio as aioredis

from mcloud.events.v1 import event_pb2, identity_events_pb2, messaging_events_pb2
from mcloud_common.bus import StreamConsumer
from mcloud_common.ids import parse_uuid
from mcloud_common.logs import get_logger
from mcloud_common.runtime import Runtime
from recommend.domain.config import ADD_TO_CART, CLICK, DISMISS, PURCHASE, REMOVE_FROM_CART, VIEW
from recommend.repo import people
from recommend.repo.events import ANON
from recommend.repo.feedback import Row
from recommend.serving import Serving

log = get_logger(__name__)
GROUP = "recommend"
TRACKED = {"Product Viewed": VIEW, "Product Added": ADD_TO_CART, "Product Removed": REMOVE_FROM_CART,
           "Product Clicked": CLICK, "Product Dismissed": DISMISS}
OTHER_TYPES = frozenset({"message.clicked", "profile.merged", "profile.erased"})


def _person(event: event_pb2.Event) -> str:
    if parse_uuid(event.profile_id) is not None:
        return event.profile_id
    return ANON + event.anonymous_id if event.anonymous_id else ""


def _item_id(value) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(int(value)) if float(value).is_integer() else str(value)
    return value.strip() if isinstance(value, str) and 0 < len(value.strip()) <= 128 else ""


class Events:
    def __init__(self, serving: Serving) -> None:
        self._serving = serving

    @staticmethod
    def accept(event: event_pb2.Event) -> bool:
        if event.type == "track":
            return event.name in TRACKED or event.name == "Order Completed"
        if event.type == "page":
            return '"product_id"' in event.properties_json
        return event.type in OTHER_TYPES

    def rows(self, event: event_pb2.Event) -> list[Row]:
        """The feedback in one behaviour event ([] when it has no usable person or item)."""
        person = _person(event)
        if not person:
            return []
        at = event.occurred_at.ToDatetime(tzinfo=UTC) if event.HasField("occurred_at") else None
        if at is None:
            return []
        anon = event.anonymous_id if not person.startswith(ANON) and len(event.anonymous_id) <= 200 else ""
        if event.type == "message.clicked":
            clicked = messaging_events_pb2.MessageClicked()
            event.payload.Unpack(clicked)
            item = _item_id(clicked.item_id)
            return [Row(event.id, person, item, CLICK, 0.0, at, 1, clicked.recommendation_id, anon)] if item else []
        try:
            props = orjson.loads(event.properties_json or "{}")
        except orjson.JSONDecodeError:
            return []
        if not isinstance(props, dict):
            return []
        if event.type == "track" and event.name == "Order Completed":
            out = []
            for n, line in enumerate(props.get("products") or ()):
                if isinstance(line, dict) and (item := _item_id(line.get("product_id") or line.get("sku"))):
                    qty = line.get("quantity")
                    qty = int(qty) if isinstance(qty, int | float) and 1 <= qty <= 10_000 else 1
                    out.append(Row(f"{event.id}:{n}", person, item, PURCHASE, 0.0, at, qty, "", anon))
            return out
        item = _item_id(props.get("product_id") or props.get("sku"))
        if not item:
            return []
        kind = VIEW if event.type == "page" else TRACKED[event.name]
        rec = props.get("recommendation_id")
        return [Row(event.id, person, item, kind, 0.0, at, 1, rec if isinstance(rec, str) else "", anon)]

    async def handle(self, event: event_pb2.Event, conn: asyncpg.Connection) -> None:
        await self.handle_batch([event], conn)

    async def handle_batch(self, batch: list[event_pb2.Event], conn: asyncpg.Connection) -> None:
        pending: dict[str, list[Row]] = {}

        async def flush() -> None:
            for tenant, rows in pending.items():
                st = await self._serving.states.get(tenant)
                weighted = [r if r.weight else replace(r, weight=st.config.weight(r.kind)) for r in rows]
                await self._serving.record(conn, tenant, weighted)
            pending.clear()

        for event in batch:
            tenant = event.tenant_id
            if parse_uuid(tenant) is None:
                continue
            if event.type == "profile.merged":
                await flush()
                merged = identity_events_pb2.ProfileMerged()
                event.payload.Unpack(merged)
                if parse_uuid(merged.from_profile_id) and parse_uuid(merged.into_profile_id):
                    await people.merge(conn, tenant, merged.from_profile_id, merged.into_profile_id)
                    await self._serving.invalidate(tenant, [merged.from_profile_id, merged.into_profile_id])
                    self._serving.states.touched(tenant)
            elif event.type == "profile.erased":
                await flush()
                erased = identity_events_pb2.ProfileErased()
                event.payload.Unpack(erased)
                pid = erased.profile_id or event.profile_id
                if parse_uuid(pid):
                    await people.erase(conn, tenant, pid)
                    await self._serving.invalidate(tenant, [pid])
                    self._serving.states.touched(tenant)
            else:
                pending.setdefault(tenant, []).extend(self.rows(event))
        await flush()


def make_consumer(pool: asyncpg.Pool, redis: aioredis.Redis, serving: Serving, shards: int, *,
                  group: str = GROUP) -> StreamConsumer:
    handler = Events(serving)
    return StreamConsumer(redis=redis, pool=pool, group=group, producers=("identity", "messaging"), shards=shards,
                          handler=functools.partial(Events.handle, handler), accept=handler.accept,
                          batch_handler=functools.partial(Events.handle_batch, handler))


async def install(runtime: Runtime, serving: Serving, shards: int) -> None:
    runtime.tasks.append(make_consumer(runtime.pool, runtime.redis, serving, shards).start())
