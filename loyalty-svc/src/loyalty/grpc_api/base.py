"""State and helpers shared by the LoyaltyService mixins (one mixin per area of the API)."""

from __future__ import annotations

import asyncpg
import grpc
import redis.asyncio as aioredis

from loyalty.ledger_lanes import LedgerLanes
from loyalty.repo.programs import ProgramCache
from mcloud_common.clock import Clock
from mcloud_common.errors import InvalidArgument
from mcloud_common.ids import parse_uuid

Context = grpc.aio.ServicerContext


class ServicerBase:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, shards: int, redis: aioredis.Redis | None = None) -> None:
        self._pool = pool
        self._clock = clock
        self._shards = shards
        self._redis = redis
        self._programs = ProgramCache()
        self._lanes = LedgerLanes(pool, clock, shards)


def require_uuid(value: str, field: str) -> str:
    """`value` if it is a UUID, else INVALID_ARGUMENT naming `field`."""
    if parse_uuid(value) is None:
        raise InvalidArgument(f"{field} must be a UUID", code=f"invalid_{field}", field=field)
    return value
