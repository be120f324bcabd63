"""A token bucket in Redis/Valkey shared by every process: capacity = rate, refilled at `rate` tokens per second.
One Lua call per send; a caller that would have to wait no longer than `max_wait` reserves its token (the bucket
goes below zero) and sleeps until it is due, so waiters are served in order; a longer wait is refused with
TemporaryFailure(retry_after=...) and reserves nothing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.exceptions

from messaging.providers.base import TemporaryFailure

# KEYS[1] bucket; ARGV: capacity, rate per second, now in ms ("" = the server's TIME), tokens wanted,
# longest acceptable wait in ms. Returns {granted 0/1, wait ms, tokens left as text}.
TOKEN_BUCKET = """
local key = KEYS[1]
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[3])
end
local want = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate / 1000)
  ts = now
end
local wait = 0
if tokens < want then
  wait = math.ceil((want - tokens) * 1000 / rate)
end
if wait > max_wait then
  return {0, wait, tostring(tokens)}
end
tokens = tokens - want
redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', key, math.ceil(capacity * 1000 / rate) + max_wait + 1000)
return {1, wait, tostring(tokens)}
"""


@dataclass(frozen=True)
class Grant:
    """One bucket decision: granted (a token is reserved; sleep `wait` seconds before using it) or refused
    (`wait` = seconds until a token would be there)."""

    granted: bool
    wait: float
    tokens: float


class RateLimiter:
    def __init__(self, redis_client, *, max_wait: float = 2.0, prefix: str = "mcloud:messaging:rate:") -> None:
        self._redis = redis_client
        self._script = redis_client.register_script(TOKEN_BUCKET) if redis_client is not None else None
        self.max_wait = max_wait
        self.prefix = prefix

    def key(self, tenant_id: str, channel: str, provider: str) -> str:
        return f"{self.prefix}{tenant_id}:{channel}:{provider}"

    async def take(self, key: str, rate: int, *, now_ms: int | None = None, max_wait: float | None = None) -> Grant:
        """Ask the bucket `key` (capacity and refill = `rate`) for one token. `now_ms` only for tests (default:
        the Redis server's clock, the same for every process)."""
        if self._script is None:
            raise TemporaryFailure("rate limit needs Redis")
        limit_ms = int((self.max_wait if max_wait is None else max_wait) * 1000)
        try:
            granted, wait_ms, tokens = await self._script(
                keys=[key], args=[rate, rate, "" if now_ms is None else now_ms, 1, limit_ms])
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise TemporaryFailure(f"rate limiter unavailable: {exc!r}", retry_after=1.0) from exc
        if isinstance(tokens, bytes):
            tokens = tokens.decode()
        return Grant(bool(int(granted)), int(wait_ms) / 1000, float(tokens))

    async def acquire(self, tenant_id: str, channel: str, provider: str, rate: int) -> float:
        """Wait for a token of (tenant, channel, provider) at `rate` per second (0 = unlimited: no Redis call).
        Returns the seconds waited; raises TemporaryFailure(retry_after=...) when the wait would pass max_wait."""
        if rate <= 0:
            return 0.0
        grant = await self.take(self.key(tenant_id, channel, provider), rate)
        if not grant.granted:
            raise TemporaryFailure(f"rate limit of {rate}/s for {provider} reached", retry_after=grant.wait,
                                   provider=provider)
        if grant.wait > 0:
            await asyncio.sleep(grant.wait)
        return grant.wait
