"""State and helpers shared by the IdentityService mixins (one mixin per area of the API)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import redis.asyncio as aioredis

from identity.domain.settings import TenantSettings
from identity.ingest_lanes import IngestLanes
from identity.repo import profiles as profile_repo
from identity.repo.settings import TenantCache, load_settings
from mcloud.identity.v1 import identity_pb2
from mcloud_common.clock import Clock
from mcloud_common.errors import InvalidArgument
from mcloud_common.ids import parse_uuid


class ServicerBase:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, shards: int, redis: aioredis.Redis | None = None) -> None:
        self._pool = pool
        self._clock = clock
        self._shards = shards
        self._redis = redis
        self._settings = TenantCache(load_settings)
        self._caches: dict[str, TenantCache[Any]] = {}
        self._lanes = IngestLanes(pool, shards, clock.now)

    def cache(self, name: str, load: Callable[[asyncpg.Connection, str], Awaitable[Any]]) -> TenantCache[Any]:
        """A named per-tenant cache, created on first use (tracking plans, ...)."""
        if name not in self._caches:
            self._caches[name] = TenantCache(load)
        return self._caches[name]

    async def tenant_settings(self, conn: asyncpg.Connection, tenant: str) -> TenantSettings:
        return await self._settings.get(conn, tenant)

    async def resolve_key(self, conn: asyncpg.Connection, tenant: str, request: identity_pb2.GetProfileRequest) -> str:
        """The surviving profile id for a profile id or an identifier (normalised like ingest does)."""
        which = request.WhichOneof("key")
        if which == "profile_id":
            return await self.resolve_id(conn, tenant, request.profile_id)
        if which == "identifier" and request.identifier.type and request.identifier.value:
            from identity.domain.normalise import InvalidIdentifier, normalise

            ident = request.identifier
            settings = await self.tenant_settings(conn, tenant)
            try:
                value = normalise(settings, ident.type, ident.value)
            except InvalidIdentifier:
                value = ident.value  # looked up as given: not found, unless stored before rules changed
            return await profile_repo.resolve_profile_id(conn, tenant, identifier=(ident.type, value))
        raise InvalidArgument("profile_id or identifier (type and value) is required", code="missing_key")

    async def resolve_id(self, conn: asyncpg.Connection, tenant: str, profile_id: str,
                         field: str = "profile_id") -> str:
        if parse_uuid(profile_id) is None:
            raise InvalidArgument(f"{field} must be a UUID", code="invalid_profile_id")
        return await profile_repo.resolve_profile_id(conn, tenant, profile_id=profile_id)


Context = grpc.aio.ServicerContext
