"""State and helpers shared by the MessagingService mixins (one mixin per area of the API)."""

from __future__ import annotations

import asyncpg
import grpc
import redis.asyncio as aioredis

from mcloud.identity.v1 import identity_pb2_grpc
from mcloud_common.clock import Clock
from mcloud_common.errors import InvalidArgument
from mcloud_common.ids import parse_uuid
from messaging.settings import MessagingSettings

Context = grpc.aio.ServicerContext


class ServicerBase:
    def __init__(self, *, pool: asyncpg.Pool, clock: Clock, redis: aioredis.Redis, settings: MessagingSettings,
                 identity: identity_pb2_grpc.IdentityServiceStub) -> None:
        self._pool = pool
        self._clock = clock
        self._redis = redis
        self._settings = settings
        self._shards = settings.stream_shards
        self._identity = identity


def require_uuid(value: str, field: str) -> str:
    """`value` if it is a UUID, else INVALID_ARGUMENT naming `field`."""
    if parse_uuid(value) is None:
        raise InvalidArgument(f"{field} must be a UUID", code=f"invalid_{field}", field=field)
    return value
