"""State shared by the JourneyService mixins."""

from __future__ import annotations

import asyncpg
import grpc
import redis.asyncio as aioredis

from mcloud_common.clock import Clock

Context = grpc.aio.ServicerContext


class ServicerBase:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, shards: int, redis: aioredis.Redis | None = None) -> None:
        self._pool = pool
        self._clock = clock
        self._shards = shards
        self._redis = redis
