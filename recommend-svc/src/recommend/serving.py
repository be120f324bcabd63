"""Serving and feedback, shared by the gRPC API and the bus consumer.

Serving: a person's served lists are cached in Valkey (one hash per person, a field per request and
tenant-state stamp) and dropped when feedback about the person arrives or their intent locks; a miss
reads the person's state in one statement, settles their intent and ranks in memory. Served lists are
recorded in batches (recommendation.served, impressions) off the request path.

Feedback: stored once per event id, then carts, intents, clicks and conversions follow, the tenant's
popularity is marked for refresh and the person's cache is dropped."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import grpc
import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from mcloud.events.v1 import recommend_events_pb2 as rev
from mcloud.identity.v1 import identity_pb2, identity_pb2_grpc
from mcloud.recommend.v1 import recommend_pb2 as pb
from mcloud_common.clock import Clock
from mcloud_common.errors import InvalidArgument, NotFound
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.ids import new_id, parse_uuid
from mcloud_common.logs import get_logger
from mcloud_common.timestamps import set_timestamp
from recommend import engine
from recommend.domain import intent as intent_rules
from recommend.domain.config import Config
from recommend.repo import events
from recommend.repo import feedback as feedback_repo
from recommend.repo.events import ANON
from recommend.settings import RecommendSettings
from recommend.state import States

log = get_logger(__name__)
MAX_COUNT = 100
FAVOURITE_TTL = 300.0
CACHE_SLOT_SECONDS = 600
IDENTITY_BACKOFF_SECONDS = 30.0
REINVALIDATE_SECONDS = 1.0

# A person's hash holds their served lists and a generation token. Feedback about the person deletes the
# hash (generation gone); a list computed under a generation is written only while that generation is
# current, so a write that lands after the delete is dropped instead of caching a stale list; the write
# need not be awaited.
_READ = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then return {1, v} end
local g = redis.call('HGET', KEYS[1], 'g')
if not g then
  g = ARGV[2]
  redis.call('HSET', KEYS[1], 'g', g)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return {0, g}
"""
_WRITE = """
if redis.call('HGET', KEYS[1], 'g') == ARGV[1] then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return 1
end
return 0
"""


def person_keys(profile_id: str, anonymous_id: str) -> list[str]:
    keys = []
    if profile_id:
        if parse_uuid(profile_id) is None:
            raise InvalidArgument("profile_id must be a UUID", code="invalid_profile_id", field="profile_id")
        keys.append(profile_id)
    if anonymous_id:
        if len(anonymous_id) > 200:
            raise InvalidArgument("anonymous_id is at most 200 characters", code="invalid_anonymous_id",
                                  field="anonymous_id")
        keys.append(ANON + anonymous_id)
    return keys


def cache_key(tenant: str, person: str) -> str:
    return f"rec:{tenant}:{person}"


@dataclass
class _Served:
    tenant: str
    id: uuid.UUID
    person: str
    scenario: str
    item_ids: list[str]
    recommenders: list[str]
    at: datetime
    context_item_id: str
    intent_locked: bool
    cold_start: bool


class Serving:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, clock: Clock, settings: RecommendSettings,
                 identity: identity_pb2_grpc.IdentityServiceStub | None) -> None:
        self._pool = pool
        self._redis = redis
        self._clock = clock
        self._settings = settings
        self._shards = settings.stream_shards
        self._identity = identity
        self.states = States(pool, clock, settings.refresh_seconds, settings.popularity_seconds)
        self._served: list[_Served] = []
        self._favourites: dict[tuple[str, str], tuple[float, str]] = {}
        self._identity_down_until = 0.0
        self._read = redis.register_script(_READ)
        self._write = redis.register_script(_WRITE)
        self._tasks: set[asyncio.Task] = set()
        self._cache_down_logged = -10.0

    # --- serving ------------------------------------------------------------------------------------

    async def recommend(self, tenant: str, request: pb.RecommendRequest) -> pb.RecommendResponse:
        count = request.count or 10
        if not 1 <= count <= MAX_COUNT:
            raise InvalidArgument(f"count must be within 1..{MAX_COUNT}", code="invalid_count", field="count")
        if request.scenario == pb.SCENARIO_PRODUCT_PAGE and not request.context_item_id:
            raise InvalidArgument("the product page scenario needs context_item_id", code="missing_context_item",
                                  field="context_item_id")
        if request.scenario not in engine.SCENARIO_NAMES:
            raise InvalidArgument("unknown scenario", code="invalid_scenario", field="scenario")
        _check_filters(request.filters)
        keys = person_keys(request.profile_id, request.anonymous_id)
        st = await self.states.get(tenant)
        # the time slot keeps lists that move with time (replenishment due, activities ending) fresh
        slot = int(self._clock.now().timestamp() // CACHE_SLOT_SECONDS)
        field = f"{st.cache_stamp}.{slot}:" + hashlib.blake2b(request.SerializeToString(deterministic=True),
                                                       digest_size=12).hexdigest()
        key = cache_key(tenant, keys[0]) if keys else f"rec:{tenant}:"
        out = pb.RecommendResponse()
        cached, token = await self._cache_read(key, field)
        if cached is not None:
            out.ParseFromString(cached)
        else:
            now = self._clock.now()
            person = await feedback_repo.state(self._pool, tenant, keys, st.config, now,
                                               limit=self._settings.history_limit) if keys else None
            locked = await self.settle_intent(tenant, person.resolved, person, st, now) if person is not None else None
            favourite = ""
            if request.profile_id and (person is None or not person.known):
                favourite = await self._favourite(tenant, request.profile_id)
            result = engine.recommend(st, request, person, now, count=count, favourite_category=favourite,
                                      intent_item=locked[0] if locked else "",
                                      intent_categories=locked[3] if locked else ())
            c = st.catalog
            for p in result.picks:
                item = out.items.add(item_id=c.ids[p.idx], score=round(p.score, 6), recommender=p.recommender,
                                     explanation=p.explanation)
                if request.include_items:
                    item.item.CopyFrom(c.items[p.idx])
            out.intent_locked, out.cold_start = result.intent_locked, result.cold_start
            if token is not None:
                # not awaited: the write only lands while the generation it was computed under is current
                self._spawn(self._cache_write(key, token, field, out.SerializeToString()))
        rec_id = new_id()
        out.recommendation_id = str(rec_id)
        if out.items:
            self._served.append(_Served(
                tenant, rec_id, keys[0] if keys else "", engine.SCENARIO_NAMES[request.scenario],
                [i.item_id for i in out.items], [i.recommender for i in out.items], self._clock.now(),
                request.context_item_id, out.intent_locked, out.cold_start))
        return out

    async def _cache_read(self, key: str, field: str) -> tuple[bytes | None, bytes | None]:
        """(the cached list or None, the person's current generation); (None, None) while Valkey is
        unreachable: serving goes on uncached."""
        try:
            hit, value = await self._read(keys=[key], args=[field, os.urandom(8).hex(),
                                                            self._settings.cache_ttl_seconds])
        except (RedisError, OSError) as exc:
            if time.monotonic() > self._cache_down_logged + 10:  # once per 10 s, not per request
                self._cache_down_logged = time.monotonic()
                log.warning("recommendation cache unavailable: serving uncached", error=str(exc))
            return None, None
        return (value, None) if hit else (None, value)

    async def _cache_write(self, key: str, generation: bytes, field: str, value: bytes) -> None:
        try:
            await self._write(keys=[key], args=[generation, field, value, self._settings.cache_ttl_seconds])
        except (RedisError, OSError) as exc:
            log.debug("served list not cached", error=str(exc))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def similar(self, tenant: str, request: pb.GetSimilarItemsRequest) -> pb.GetSimilarItemsResponse:
        count = request.count or 10
        if not 1 <= count <= MAX_COUNT:
            raise InvalidArgument(f"count must be within 1..{MAX_COUNT}", code="invalid_count", field="count")
        _check_filters(request.filters)
        st = await self.states.get(tenant)
        if request.item_id not in st.catalog.index:
            raise NotFound(f"no item {request.item_id!r} in the catalogue", code="item_not_found")
        picks = engine.similar(st, request.item_id, request.filters if request.HasField("filters") else None,
                               self._clock.now(), count)
        out = pb.GetSimilarItemsResponse()
        for p in picks:
            item = out.items.add(item_id=st.catalog.ids[p.idx], score=round(p.score, 6), recommender=p.recommender,
                                 explanation=p.explanation)
            if request.include_items:
                item.item.CopyFrom(st.catalog.items[p.idx])
        return out

    async def _favourite(self, tenant: str, profile_id: str) -> str:
        """The person's favourite category from identity (cached a few minutes; "" when unknown)."""
        if self._identity is None or time.monotonic() < self._identity_down_until:
            return ""
        hit = self._favourites.get((tenant, profile_id))
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        favourite = ""
        try:
            r = await self._identity.GetProfile(identity_pb2.GetProfileRequest(profile_id=profile_id),
                                                metadata=tenant_metadata(tenant), timeout=0.25)
            computed = orjson.loads(r.profile.computed_json or "{}")
            favourite = str(computed.get("favourite_category") or "") if isinstance(computed, dict) else ""
        except (TimeoutError, grpc.aio.AioRpcError, orjson.JSONDecodeError) as exc:
            log.debug("no favourite category", profile_id=profile_id, error=str(exc))
            code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None
            if isinstance(exc, TimeoutError) or code in (grpc.StatusCode.UNAVAILABLE,
                                                         grpc.StatusCode.DEADLINE_EXCEEDED):
                # identity is down or slow: cold starts use overall popularity for a while, not a wait each
                self._identity_down_until = time.monotonic() + IDENTITY_BACKOFF_SECONDS
        if len(self._favourites) > 100_000:
            self._favourites.clear()
        self._favourites[(tenant, profile_id)] = (now + FAVOURITE_TTL, favourite)
        return favourite

    # --- intent -----------------------------------------------------------------------------------

    async def settle_intent(self, tenant: str, person_key: str, person: feedback_repo.PersonState,
                            st: engine.TenantState, now: datetime, conn: asyncpg.Connection | None = None
                            ) -> tuple | None:
        """The person's lock in force, locking it now when the rules say so (intent.locked emitted once
        per lock; a new signal on the locked item extends it)."""
        cand = intent_rules.evaluate(person.history, person.cart, st.config, now)
        current = person.intent
        if cand is None or not cand.locked or cand.item_id not in st.catalog.index:
            return current
        expires = intent_rules.lapses_at(cand, st.config)
        if current is not None and current[0] == cand.item_id:
            if expires > current[5]:
                await (conn or self._pool).execute(
                    "UPDATE intents SET expires_at = $3, score = $4 WHERE tenant_id = $1 AND person = $2",
                    tenant, person_key, expires, cand.score)
            return current
        idx = st.catalog.index[cand.item_id]
        targets = engine.Recommenders(st, now).cross_targets(idx)
        category = st.catalog.leaf[idx]
        if conn is None:
            async with self._pool.acquire() as c, c.transaction():
                locked = await self._lock(c, tenant, person_key, cand, category, targets, now, expires)
        else:
            locked = await self._lock(conn, tenant, person_key, cand, category, targets, now, expires)
        if locked:
            await self._redis.delete(cache_key(tenant, person_key))
        return cand.item_id, category, cand.score, targets, now, expires

    async def _lock(self, conn: asyncpg.Connection, tenant: str, person_key: str, cand: intent_rules.Candidate,
                    category: str, targets: list[str], now: datetime, expires: datetime) -> bool:
        row = await conn.fetchrow(
            """
            INSERT INTO intents (tenant_id, person, item_id, category, score, cross_categories, locked_at, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (tenant_id, person) DO UPDATE SET item_id = EXCLUDED.item_id, category = EXCLUDED.category,
                score = EXCLUDED.score, cross_categories = EXCLUDED.cross_categories, locked_at = EXCLUDED.locked_at,
                expires_at = EXCLUDED.expires_at
            WHERE intents.item_id <> EXCLUDED.item_id OR intents.expires_at <= $7
            RETURNING 1
            """, tenant, person_key, cand.item_id, category, cand.score, targets, now, expires)
        if row is None:
            return False
        profile_id, anonymous_id = events.split_person(person_key)
        payload = rev.IntentLocked(profile_id=profile_id, anonymous_id=anonymous_id, item_id=cand.item_id,
                                   category=category, score=cand.score, cross_categories=targets)
        await events.publish(conn, [events.envelope(tenant, "intent.locked", person_key, payload, at=now)],
                             self._shards)
        return True

    async def intent(self, tenant: str, profile_id: str, anonymous_id: str) -> pb.Intent:
        keys = person_keys(profile_id, anonymous_id)
        if not keys:
            raise InvalidArgument("profile_id or anonymous_id is required", code="missing_person", field="profile_id")
        st = await self.states.get(tenant)
        now = self._clock.now()
        person = await feedback_repo.state(self._pool, tenant, keys, st.config, now, limit=self._settings.history_limit)
        locked = await self.settle_intent(tenant, person.resolved, person, st, now)
        out = pb.Intent()
        if locked is not None:
            item_id, category, score, targets, locked_at, expires_at = locked
            out.locked, out.item_id, out.category, out.score = True, item_id, category, score
            out.cross_categories.extend(targets)
            set_timestamp(out.locked_at, locked_at)
            set_timestamp(out.expires_at, expires_at)
        elif (cand := intent_rules.evaluate(person.history, person.cart, st.config, now)) is not None:
            out.item_id, out.score = cand.item_id, cand.score
            if (i := st.catalog.index.get(cand.item_id)) is not None:
                out.category = st.catalog.leaf[i]
        return out

    # --- feedback ---------------------------------------------------------------------------------

    def rows(self, tenant: str, feedback: Sequence[pb.Feedback], config: Config) -> list[feedback_repo.Row]:
        """Validated feedback rows (INVALID_ARGUMENT names the first bad entry)."""
        if not feedback:
            raise InvalidArgument("feedback must not be empty", code="no_feedback", field="feedback")
        if len(feedback) > 1000:
            raise InvalidArgument("at most 1000 feedback entries per call", code="too_much_feedback",
                                  field="feedback")
        now = self._clock.now()
        out = []
        for n, f in enumerate(feedback):
            where = f"feedback[{n}]"
            if not 1 <= len(f.event_id) <= 200:
                raise InvalidArgument("event_id is required (1..200 characters)", code="missing_event_id",
                                      field=f"{where}.event_id")
            if not 1 <= len(f.item_id) <= 128:
                raise InvalidArgument("item_id is required (1..128 characters)", code="missing_item_id",
                                      field=f"{where}.item_id")
            if f.kind not in (1, 2, 3, 4, 5, 6):
                raise InvalidArgument("kind must be view, add_to_cart, remove_from_cart, purchase, click or dismiss",
                                      code="invalid_kind", field=f"{where}.kind")
            try:
                keys = person_keys(f.profile_id, f.anonymous_id)
            except InvalidArgument as exc:
                raise InvalidArgument(exc.detail, code=exc.code, field=f"{where}.{exc.field}") from None
            if not keys:
                raise InvalidArgument("profile_id or anonymous_id is required", code="missing_person",
                                      field=f"{where}.profile_id")
            if abs(f.weight) > 1000:
                raise InvalidArgument("weight must be within -1000..1000", code="invalid_weight",
                                      field=f"{where}.weight")
            at = f.occurred_at.ToDatetime(tzinfo=UTC) if f.HasField("occurred_at") else now
            out.append(feedback_repo.Row(
                event_id=f.event_id, person=keys[0], item_id=f.item_id, kind=f.kind,
                weight=f.weight or config.weight(f.kind), occurred_at=min(at, now), quantity=max(f.quantity, 1),
                recommendation_id=f.recommendation_id))
        return out

    async def record(self, conn: asyncpg.Connection, tenant: str, rows: Sequence[feedback_repo.Row]
                     ) -> list[feedback_repo.Row]:
        """Store feedback in the caller's transaction and apply what follows from it; the new rows."""
        st = await self.states.get(tenant)
        if self._served and any(r.recommendation_id for r in rows):
            await self.flush_served()  # a click right after the list was served finds it
        new = await feedback_repo.record(conn, tenant, rows, st.config, shards=self._shards)
        if not new:
            return new
        self.states.feed(tenant, new)
        people = sorted({r.person for r in new})
        carts = {r["person"] for r in await conn.fetch(
            "SELECT DISTINCT person FROM carts WHERE tenant_id = $1 AND person = ANY($2::text[])", tenant, people)}
        now = self._clock.now()
        for p in people:
            if p in carts:
                person = await feedback_repo.state(conn, tenant, [p], st.config, now,
                                                   limit=self._settings.history_limit)
                await self.settle_intent(tenant, p, person, st, now, conn=conn)
        stale = people + sorted({ANON + r.anonymous_id for r in new if r.anonymous_id})
        await self.invalidate(tenant, stale)
        # the caller's transaction commits after this returns, and its commit cannot be observed from here: a
        # list computed meanwhile from the state before the commit is dropped by a second invalidation
        asyncio.get_running_loop().call_later(
            REINVALIDATE_SECONDS, lambda: self._spawn(self._invalidate_quietly(tenant, stale)))
        return new

    async def _invalidate_quietly(self, tenant: str, people: Sequence[str]) -> None:
        try:
            await self.invalidate(tenant, people)
        except (RedisError, OSError) as exc:
            log.warning("recommendation cache not invalidated", error=str(exc))

    async def invalidate(self, tenant: str, people: Sequence[str]) -> None:
        if people:
            await self._redis.delete(*(cache_key(tenant, p) for p in people))

    # --- served lists -------------------------------------------------------------------------------

    async def flush_served(self) -> int:
        """Write the served lists gathered since the last flush: rows for click attribution, daily
        impressions per scenario and recommender, recommendation.served events."""
        batch, self._served = self._served, []
        if not batch:
            return 0
        impressions: dict[tuple, int] = {}
        evs = []
        for s in batch:
            for rec in s.recommenders:
                k = (s.tenant, s.at.date(), s.scenario, rec)
                impressions[k] = impressions.get(k, 0) + 1
            profile_id, anonymous_id = events.split_person(s.person)
            payload = rev.RecommendationServed(
                recommendation_id=str(s.id), profile_id=profile_id, anonymous_id=anonymous_id, scenario=s.scenario,
                context_item_id=s.context_item_id, item_ids=s.item_ids, recommenders=s.recommenders,
                intent_locked=s.intent_locked, cold_start=s.cold_start)
            evs.append(events.envelope(s.tenant, "recommendation.served", s.person, payload, at=s.at))
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO served (tenant_id, id, person, scenario, item_ids, recommenders, created_at) "
                    "SELECT t, i, p, sc, array(SELECT jsonb_array_elements_text(items::jsonb)), "
                    "array(SELECT jsonb_array_elements_text(recs::jsonb)), at FROM unnest($1::uuid[], $2::uuid[], "
                    "$3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[]) AS s(t, i, p, sc, items, "
                    "recs, at) ON CONFLICT DO NOTHING",
                    [s.tenant for s in batch], [s.id for s in batch], [s.person for s in batch],
                    [s.scenario for s in batch], [orjson.dumps(s.item_ids).decode() for s in batch],
                    [orjson.dumps(s.recommenders).decode() for s in batch],
                    [s.at for s in batch])
                keys = list(impressions)
                await conn.execute(
                    "INSERT INTO impressions_daily (tenant_id, day, scenario, recommender, impressions) "
                    "SELECT * FROM unnest($1::uuid[], $2::date[], $3::text[], $4::text[], $5::bigint[]) "
                    "ON CONFLICT (tenant_id, day, scenario, recommender) DO UPDATE "
                    "SET impressions = impressions_daily.impressions + EXCLUDED.impressions",
                    [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [k[3] for k in keys],
                    [impressions[k] for k in keys])
                await events.publish(conn, evs, self._shards)
        except (asyncpg.PostgresError, OSError):
            log.exception("served lists not recorded; kept for the next flush", lists=len(batch))
            self._served[:0] = batch[-50_000:]
            return 0
        return len(batch)


def _check_filters(f: pb.Filters) -> None:
    if f.min_price_minor < 0 or f.max_price_minor < 0:
        raise InvalidArgument("prices must not be negative", code="invalid_price", field="filters.min_price_minor")
    if f.max_price_minor and f.min_price_minor > f.max_price_minor:
        raise InvalidArgument("min_price_minor is above max_price_minor", code="invalid_price_range",
                              field="filters.min_price_minor")
    if f.currency and not (len(f.currency) == 3 and f.currency.isalpha() and f.currency.isupper()):
        raise InvalidArgument("currency must be an ISO 4217 code such as EUR", code="invalid_currency",
                              field="filters.currency")
    for k in f.kinds:
        if k not in (pb.ITEM_KIND_PRODUCT, pb.ITEM_KIND_ACTIVITY, pb.ITEM_KIND_CONTENT):
            raise InvalidArgument("unknown item kind", code="invalid_kind", field="filters.kinds")
