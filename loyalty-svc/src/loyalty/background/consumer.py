"""Loyalty's reactions to identity's events (group "loyalty" on events.identity.*), each applied once
per event id in the consumer's transaction:

- track "Signed Up": enrolment in programs that auto-enrol, then the signup rules;
- track "Order Completed": the order rules (points pending for the return window; an order earns once
  however often it is replayed, by order id), enrolment first in programs with enroll_on_order, and
  the coupon the order names is redeemed;
- track "Order Refunded" / "Order Cancelled": the order's points reversed, pro rata to `total`
  refunded (Cancelled: all of them);
- track "Product Reviewed", "Product Shared" / "Cart Shared", or any name a rule uses as trigger: those
  rules, once per event;
- profile.identified: a `birthday` trait (YYYY-MM-DD or MM-DD) is kept for the birthday rules;
- profile.merged: memberships, lots, coupons and redemptions folded into the survivor;
- profile.erased: the person's loyalty data deleted.
Events about people who are not members (and programs not enabled) change nothing. An event a
program refuses (a suspended member, a malformed order) is logged and skipped, not retried.
"""

from __future__ import annotations

import functools
import re

import asyncpg
import orjson
import redis.asyncio as aioredis

from loyalty.domain import orders as order_rules
from loyalty.domain import rules
from loyalty.domain.programs import TRIGGER_EVENTS
from loyalty.repo import coupons as coupon_repo
from loyalty.repo import ledger, people
from loyalty.repo import members as member_repo
from loyalty.repo import rewards as reward_repo
from loyalty.repo.events import publish
from loyalty.repo.programs import ProgramCache
from loyalty.settings import LoyaltySettings
from mcloud.events.v1 import event_pb2, identity_events_pb2
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud_common.bus import StreamConsumer, event_properties
from mcloud_common.clock import Clock
from mcloud_common.errors import DomainError
from mcloud_common.ids import parse_uuid
from mcloud_common.logs import get_logger
from mcloud_common.runtime import Runtime

log = get_logger(__name__)

GROUP = "loyalty"
CONSUMED = ("track", "profile.identified", "profile.merged", "profile.erased")
_BIRTHDAY = re.compile(r"^(?:\d{4}-)?(\d{2})-(\d{2})")
_CHANNELS = {event_pb2.CHANNEL_WEB: "web", event_pb2.CHANNEL_APP: "app", event_pb2.CHANNEL_MINI_PROGRAM: "mini_program",
             event_pb2.CHANNEL_POS: "pos", event_pb2.CHANNEL_CRM: "crm", event_pb2.CHANNEL_ADS: "ads",
             event_pb2.CHANNEL_SERVER: "server"}



# behaviour events loyalty reacts to whatever the programs say; custom rule triggers come on top
_NAMES = frozenset({"Order Completed", "Order Refunded", "Order Cancelled", "Signed Up",
                    *(name for names in TRIGGER_EVENTS.values() for name in names)})
_CUSTOM_TRIGGERS = """
    SELECT DISTINCT rule->>'trigger' AS name FROM programs, jsonb_array_elements(spec->'earn_rules') AS rule
"""
TRIGGER_REFRESH_SECONDS = 5


class IdentityEvents:
    def __init__(self, clock: Clock, shards: int) -> None:
        self._clock = clock
        self._shards = shards
        self._programs = ProgramCache()
        self._custom: frozenset[str] = frozenset()

    async def refresh_triggers(self, pool: asyncpg.Pool) -> None:
        """Learn the custom event names programs' rules use (a rule added on another replica counts
        within TRIGGER_REFRESH_SECONDS)."""
        self._custom = frozenset(r["name"] for r in await pool.fetch(_CUSTOM_TRIGGERS) if r["name"])

    def accept(self, event: event_pb2.Event) -> bool:
        """Worth a transaction: every non-track event consumed, and track events some rule or the
        order/signup handling reacts to. The rest (page views, product views...) are acked unread."""
        return event.type != "track" or event.name in _NAMES or event.name in self._custom

    async def handle(self, event: event_pb2.Event, conn: asyncpg.Connection) -> None:
        tenant = event.tenant_id
        if parse_uuid(tenant) is None:
            return
        if event.type == "profile.merged":
            merged = identity_events_pb2.ProfileMerged()
            event.payload.Unpack(merged)
            await self.merged(conn, tenant, merged.from_profile_id, merged.into_profile_id)
            return
        if event.type == "profile.erased":
            erased = identity_events_pb2.ProfileErased()
            event.payload.Unpack(erased)
            await self.erased(conn, tenant, erased.profile_id or event.profile_id)
            return
        if parse_uuid(event.profile_id) is None:
            return
        programs = await self._programs.all(conn, tenant)
        for program in programs.values():
            if not program.enabled:
                continue
            try:
                async with conn.transaction():  # a savepoint: a refused event leaves the others' work intact
                    if event.type == "track":
                        await self.track(conn, tenant, program, event)
                    elif event.type == "profile.identified":
                        await self.identify(conn, tenant, program, event)
            except DomainError as exc:
                log.info("event skipped by program", event_id=event.id, program_id=program.id, code=exc.code,
                         detail=exc.detail)

    async def handle_batch(self, events: list[event_pb2.Event], conn: asyncpg.Connection) -> None:
        """A stream's events of one read, in order, in the consumer's one transaction. Runs of
        consecutive orders are booked together (one lock, one read and one write statement per program
        and run, as the gRPC lanes do); everything else one by one, so each person's events keep their
        order."""
        run: list[event_pb2.Event] = []
        for event in events:
            if (event.type == "track" and event.name == "Order Completed" and parse_uuid(event.tenant_id)
                    and parse_uuid(event.profile_id)):
                run.append(event)
                continue
            await self._orders(run, conn)
            run = []
            await self.handle(event, conn)
        await self._orders(run, conn)

    async def _orders(self, run: list[event_pb2.Event], conn: asyncpg.Connection) -> None:
        by_tenant: dict[str, list[event_pb2.Event]] = {}
        for event in run:
            by_tenant.setdefault(event.tenant_id, []).append(event)
        now = self._clock.now()
        for tenant, events in by_tenant.items():
            for program in (await self._programs.all(conn, tenant)).values():
                if program.enabled:
                    await self._program_orders(conn, tenant, program, events, now)

    async def _program_orders(self, conn: asyncpg.Connection, tenant: str, program: pb.Program,
                              events: list[event_pb2.Event], now) -> None:
        orders: list[tuple[event_pb2.Event, pb.Order, dict]] = []
        for event in events:
            props = event_properties(event)
            order = order_rules.order_from_properties(props, default_currency=program.currency,
                                                      channel=_CHANNELS.get(event.channel, ""))
            if order is None or order.currency != program.currency:
                log.info("order not earnable", event_id=event.id, program_id=program.id)
                continue
            try:
                ledger.check_order(program, order)
            except DomainError:
                log.info("order not earnable", event_id=event.id, program_id=program.id)
                continue
            orders.append((event, order, props))
        if not orders:
            return
        if program.enroll_on_order:
            for event, _, props in orders:
                _, enrolled = await member_repo.enroll(conn, tenant, program, event.profile_id,
                                                       str(props.get("source") or _CHANNELS.get(event.channel, "")),
                                                       now)
                await publish(conn, enrolled, self._shards)
        profiles = sorted({event.profile_id for event, _, _ in orders})
        books = await ledger.Book.open_many(conn, tenant, program, profiles, now, keys=[],
                                            facts=[ledger.order_fact_id(program.id, o.order_id) for _, o, _ in orders])
        alone = []
        for event, order, _ in orders:
            book = books.get(event.profile_id)
            if book is None:  # not a member, merged away or suspended: the one-event path decides
                alone.append((event, order))
                continue
            try:
                await ledger.book_order(book, order)
            except DomainError as exc:
                log.info("event skipped by program", event_id=event.id, program_id=program.id, code=exc.code)
        await ledger.flush_all([b for b in books.values() if b.entries or b.qualifying], self._shards)
        for event, order in alone:
            try:
                async with conn.transaction():
                    if await member_repo.find(conn, tenant, program.id, event.profile_id) is not None:
                        await ledger.earn_order(conn, tenant, program, event.profile_id, order, now=now,
                                                shards=self._shards)
            except DomainError as exc:
                log.info("event skipped by program", event_id=event.id, program_id=program.id, code=exc.code)
        for event, order, props in orders:
            if code := props.get("coupon"):
                discount = order_rules.to_minor(props.get("discount"), order.currency) or 0
                await coupon_repo.redeem_for_order(conn, tenant, str(code), event.profile_id, order.order_id,
                                                   discount, order.currency, now=now, shards=self._shards)

    async def track(self, conn: asyncpg.Connection, tenant: str, program: pb.Program, event: event_pb2.Event) -> None:
        name, profile_id, now = event.name, event.profile_id, self._clock.now()
        props = event_properties(event)
        events = []
        if (name == "Signed Up" and program.auto_enroll) or (name == "Order Completed" and program.enroll_on_order):
            _, events = await member_repo.enroll(conn, tenant, program, profile_id,
                                                 str(props.get("source") or _CHANNELS.get(event.channel, "")), now)
            await publish(conn, events, self._shards)
        if await member_repo.find(conn, tenant, program.id, profile_id) is None:
            return
        if name == "Order Completed":
            order = order_rules.order_from_properties(props, default_currency=program.currency,
                                                      channel=_CHANNELS.get(event.channel, ""))
            if order is None or order.currency != program.currency:
                log.info("order not earnable", event_id=event.id, program_id=program.id)
                return
            await ledger.earn_order(conn, tenant, program, profile_id, order, now=now, shards=self._shards)
            if code := props.get("coupon"):
                discount = order_rules.to_minor(props.get("discount"), order.currency) or 0
                await coupon_repo.redeem_for_order(conn, tenant, str(code), profile_id, order.order_id, discount,
                                                   order.currency, now=now, shards=self._shards)
        elif name in ("Order Refunded", "Order Cancelled"):
            order_id, refund = order_rules.refund_from_properties(props, default_currency=program.currency)
            if name == "Order Cancelled":
                refund = 0
            if not order_id:
                return
            try:
                await ledger.reverse_order(conn, tenant, program, profile_id, order_id, refund, key=f"event:{event.id}",
                                           reason="cancellation" if name == "Order Cancelled" else "return",
                                           now=now, shards=self._shards)
            except DomainError as exc:
                if exc.code != "order_not_found":
                    raise
        elif (trigger := rules.trigger_of(program, name)) is not None:
            await ledger.earn_trigger(conn, tenant, program, profile_id, trigger, f"event:{event.id}", now=now,
                                      shards=self._shards, description=name)

    async def identify(self, conn: asyncpg.Connection, tenant: str, program: pb.Program,
                       event: event_pb2.Event) -> None:
        identified = identity_events_pb2.ProfileIdentified()
        event.payload.Unpack(identified)
        try:
            traits = orjson.loads(identified.traits_json or "{}")
        except orjson.JSONDecodeError:
            return
        birthday = traits.get("birthday") if isinstance(traits, dict) else None
        match = _BIRTHDAY.match(str(birthday)) if birthday else None
        if match is None:
            return
        await conn.execute(
            "UPDATE members SET birthday = $4 WHERE tenant_id = $1 AND program_id = $2 AND profile_id = $3 "
            "AND birthday IS DISTINCT FROM $4", tenant, program.id, event.profile_id,
            f"{match.group(1)}-{match.group(2)}")

    async def merged(self, conn: asyncpg.Connection, tenant: str, from_id: str, into_id: str) -> None:
        if parse_uuid(from_id) is None or parse_uuid(into_id) is None:
            return
        now = self._clock.now()
        for program in (await self._programs.all(conn, tenant)).values():
            events = await people.merge(conn, tenant, program, from_id, into_id, now)
            await publish(conn, events, self._shards)
        await coupon_repo.merge_profile(conn, tenant, from_id, into_id)
        await reward_repo.merge_profile(conn, tenant, from_id, into_id)

    async def erased(self, conn: asyncpg.Connection, tenant: str, profile_id: str) -> None:
        if parse_uuid(profile_id) is None:
            return
        for pid in await people.erase(conn, tenant, profile_id, self._clock.now()):
            await coupon_repo.erase_profile(conn, tenant, pid)
            await reward_repo.erase_profile(conn, tenant, pid)


def make_consumer(pool: asyncpg.Pool, redis: aioredis.Redis, clock: Clock, shards: int, *,
                  group: str = GROUP) -> tuple[StreamConsumer, IdentityEvents]:
    """The consumer of identity's stream (group "loyalty"; tests may use their own) and its handler."""
    handler = IdentityEvents(clock, shards)
    consumer = StreamConsumer(redis=redis, pool=pool, group=group, producers=("identity",), shards=shards,
                              handler=functools.partial(IdentityEvents.handle, handler), types=CONSUMED,
                              accept=handler.accept,
                              batch_handler=functools.partial(IdentityEvents.handle_batch, handler))
    return consumer, handler


async def install(runtime: Runtime, settings: LoyaltySettings) -> None:
    """Start the identity-events consumer and its trigger refresh (they stop with `runtime`)."""
    consumer, handler = make_consumer(runtime.pool, runtime.redis, runtime.clock, settings.stream_shards)
    await handler.refresh_triggers(runtime.pool)
    runtime.every(TRIGGER_REFRESH_SECONDS, lambda: handler.refresh_triggers(runtime.pool), name="loyalty-triggers")
    runtime.tasks.append(consumer.start())
