"""The HTTP gateway: FastAPI app factory and its lifespan (database pool, Valkey, one gRPC channel
per service)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import grpc
import redis.asyncio as aioredis
from fastapi import FastAPI

from gateway import __version__
from gateway.bodies import BodyLimitMiddleware
from gateway.errors import install_error_handlers
from gateway.openapi import install_openapi
from gateway.ratelimit import RateLimiter
from gateway.resources import Resources
from gateway.routes import (
    catalog,
    clerk,
    coupons,
    health,
    identity_settings,
    imports,
    journeys,
    kpis,
    loyalty,
    message_people,
    message_tracking,
    messages,
    meta,
    privacy,
    profile_admin,
    profiles,
    recommendations,
    rewards,
    segments,
    templates,
    tracking,
)
from gateway.settings import GatewaySettings
from gateway.tenancy import KeyCache
from gateway.tracing import TracingMiddleware
from mcloud_common.clock import Clock, clock_from_env
from mcloud_common.db import create_pool
from mcloud_common.grpc_client import make_channel
from mcloud_common.heap import freeze_long_lived
from mcloud_common.logs import get_logger

log = get_logger(__name__)

DESCRIPTION = """
The HTTP front door of mcloud, an open-source omnichannel marketing cloud (CDP, loyalty, journeys,
recommendations, messaging).

**Tracking** is compatible with the [Segment HTTP Tracking API](https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/):
point an existing Segment or RudderStack SDK's host at this gateway and use a write key.
Limits are Segment's: 32 KB per call, 500 KB per batch.

**Authentication**
* *Write key* (`wk_...`, publishable, safe in browsers and apps): events only. Send it as the HTTP
  Basic user name with an empty password, as `Authorization: Bearer wk_...`, or as `writeKey` in the body.
* *Secret key* (`sk_...`, server side only): `Authorization: Bearer sk_...`, with scopes
  (`events:write`, `profiles:read`, `profiles:write`, `segments:read`, `segments:write`, `imports:write`,
  `loyalty:read`, `loyalty:write`, `journeys:read`, `journeys:write`, `messaging:read`, `messaging:write`,
  `recommend:read`, `recommend:write`, `analytics:read`; `admin` implies all).

**Errors** are [RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) `application/problem+json` with a
stable `code`; `type` links to `/problems/{code}`.

**Rate limits** are per key (token bucket); a 429 carries `Retry-After` and `RateLimit-*` headers.
"""

TAGS = [
    {
        "name": "tracking",
        "description": "Segment-compatible ingest: track, identify, alias, page, screen, "
        "group and batch. Write key.",
    },
    {
        "name": "profiles",
        "description": "Unified customer profiles by id or `type:value`. Secret key with `profiles:read` "
        "(`profiles:write` to change them, `admin` to merge and split).",
    },
    {
        "name": "segments",
        "description": "Rule-based audiences kept current as events arrive. `segments:read` / `segments:write`.",
    },
    {
        "name": "loyalty",
        "description": "Loyalty programs (tiers, earn rules, points policy) and their report, members, points "
        "(earn, spend, adjust, reverse) and statements. `loyalty:read` / `loyalty:write`.",
    },
    {
        "name": "coupons",
        "description": "Coupon campaigns, code pools, issuing, and checkout: validate, reserve, redeem, release. "
        "`loyalty:read` / `loyalty:write`.",
    },
    {
        "name": "rewards",
        "description": "Rewards catalogues bought with points, redemptions and their fulfilment. "
        "`loyalty:read` / `loyalty:write`.",
    },
    {
        "name": "journeys",
        "description": "Marketing automation: journey definitions (JSON graphs) as drafts with precise validation, "
        "published versions, pause/resume/archive, enrollments and their stats (treated vs holdout). "
        "`journeys:read` / `journeys:write`.",
    },
    {
        "name": "templates",
        "description": "Messaging templates: versioned, localised (Liquid), preview and test-send. "
        "`messaging:read` / `messaging:write`.",
    },
    {
        "name": "messages",
        "description": "Sending: one message, many, campaigns to a segment; message status, timeline and history. "
        "`messaging:read` / `messaging:write`.",
    },
    {
        "name": "messaging preferences",
        "description": "Per-person channel opt-ins, locale, time zone, quiet hours, suppressions, the in-app inbox, "
        "best send time, and channel providers. `messaging:read` / `messaging:write`.",
    },
    {
        "name": "message tracking",
        "description": "Public links inside messages: open pixel, click redirect, one-click unsubscribe (RFC 8058), "
        "preference page, and providers' delivery webhooks (signature checked). No API key.",
    },
    {
        "name": "catalog",
        "description": "The items recommendations are made of: products, activities (events such as a city "
        "marathon) and content, written in bulk by id. Prices are decimal major units with a `currency`. "
        "`recommend:read` / `recommend:write`.",
    },
    {
        "name": "recommendations",
        "description": "What a person should see per scenario (home, product page, cart, email, store tablet), "
        "similar items, feedback (views, carts, purchases, clicks, dismissals), purchase intent, model retraining "
        "and its offline metrics, settings, and online CTR and conversion. `recommend:read` / `recommend:write`.",
    },
    {"name": "clerk", "description": "The store-clerk tablet's view of a customer. `profiles:read`."},
    {
        "name": "kpis",
        "description": "Marketing KPIs: audience, loyalty members and tiers, journey conversion against holdout, "
        "revenue, cost and ROI per channel, recommendation CTR uplift. `analytics:read`.",
    },
    {"name": "settings", "description": "Identity settings of your tenant. `admin`."},
    {"name": "account", "description": "Which tenant and key you are using."},
    {"name": "health", "description": "Liveness and readiness probes."},
    {"name": "problems", "description": "Documentation of error codes."},
]

_SEGMENT_CALLS = frozenset(f"/v1/{c}" for c in ("track", "identify", "alias", "page", "screen", "group"))


def body_limit_for(settings: GatewaySettings):
    batch_paths = frozenset({"/v1/batch", "/v1/import"})

    def limit_for(path: str) -> int:
        if path in batch_paths:
            return settings.max_batch_bytes
        if path in _SEGMENT_CALLS:
            return settings.max_call_bytes
        return settings.max_body_bytes

    return limit_for


def create_app(
    settings: GatewaySettings,
    *,
    channels: Mapping[str, grpc.aio.Channel] | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """The gateway app. `channels` (service name -> channel) replaces the ones made from the
    settings' targets; the caller then owns and closes them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url, min_size=1, max_size=settings.db_pool_size)
        redis = aioredis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        given = dict(channels or {})
        owned = {
            name: make_channel(target, default_timeout=settings.grpc_timeout_seconds)
            for name, target in settings.targets().items()
            if name not in given
        }
        app.state.resources = Resources(
            settings=settings,
            pool=pool,
            redis=redis,
            channels={**owned, **given},
            key_cache=KeyCache(ttl=settings.key_cache_seconds),
            limiter=RateLimiter(redis, rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst),
            clock=clock or clock_from_env(settings.clock_offset_file),
        )
        freeze_long_lived()  # full collections skip the imports and settings from now on (mcloud_common.heap)
        log.info("gateway ready", services=settings.targets())
        try:
            yield
        finally:
            for channel in owned.values():
                await channel.close()
            await redis.aclose()
            await pool.close()

    app = FastAPI(
        title="mcloud gateway",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        # FastAPI's own spans would record raw paths (PII) and cost CPU per request: gateway.tracing traces
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handlers(app)
    app.include_router(tracking.router)
    app.include_router(profiles.router)
    app.include_router(profile_admin.router)
    app.include_router(segments.router)
    app.include_router(identity_settings.router)
    app.include_router(loyalty.router)
    app.include_router(coupons.router)
    app.include_router(rewards.router)
    app.include_router(journeys.router)
    app.include_router(templates.router)
    app.include_router(messages.router)
    app.include_router(message_people.router)
    app.include_router(message_tracking.router)
    app.include_router(catalog.router)
    app.include_router(recommendations.router)
    app.include_router(clerk.router)
    app.include_router(privacy.router)
    app.include_router(imports.router)
    app.include_router(kpis.router)
    app.include_router(kpis.attribution_router)
    app.include_router(meta.router)
    app.include_router(health.router)
    install_openapi(app)
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit_for(settings))
    app.add_middleware(TracingMiddleware)
    return app
