"""State shared by the JourneyService mixins."""

from __future__ import annotations

import asyncpg
import grpc
import redis.asyncio as aioredis

from journey.background.worker import Effects
from mcloud_common.clock import Clock

Context = grpc.aio.ServicerContext


class ServicerBase:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, shards: int, redis: aioredis.Redis | None = None,
                 effects: Effects | None = None) -> None:
        self._pool = pool
        self._clock = clock
        self._shards = shards
        self._redis = redis
        # clients of identity and loyalty (profile facts, estimates) and of the effect-owning services
        self._effects = effects or Effects("127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50055")
