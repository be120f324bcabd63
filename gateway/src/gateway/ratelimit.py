"""Per-key token bucket in Valkey: one Lua script per request (EVALSHA), atomic across gateway
replicas. When Valkey is down the gateway fails open: traffic keeps flowing, the failure is logged."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from mcloud_common.logs import get_logger

log = get_logger(__name__)

# KEYS[1] bucket; ARGV rate (tokens/s), burst, cost. The server clock (TIME) is the only clock, so
# replicas with skewed clocks agree. State: tokens (float as string), ts (microseconds).
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate / 1000000)
local allowed = 0
local retry_us = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_us = math.ceil((cost - tokens) * 1000000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%d', now))
local full_us = math.ceil((burst - tokens) * 1000000 / rate)
redis.call('PEXPIRE', KEYS[1], math.ceil(full_us / 1000) + 1000)
return {allowed, math.floor(tokens), retry_us, full_us}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int  # whole seconds, rounded up; 0 when allowed
    reset: int  # seconds until the bucket is full again

    def headers(self, window: int) -> dict[str, str]:
        h = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
            "RateLimit-Policy": f"{self.limit};w={window}",
        }
        if not self.allowed:
            h["Retry-After"] = str(self.retry_after)
        return h


class RateLimiter:
    """`await check(key_id)` -> Decision. Fail-open: a Valkey error allows the request and opens a
    short circuit so a dead Valkey costs one failed call per `open_seconds`, not one per request."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        rate: float,
        burst: int,
        prefix: str = "gw:rl:",
        open_seconds: float = 1.0,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.prefix = prefix
        self.open_seconds = open_seconds
        self._script = redis.register_script(_LUA)
        self._open_until = 0.0
        self._window = max(1, math.ceil(burst / rate))

    @property
    def window(self) -> int:
        return self._window

    def _open(self) -> Decision:
        return Decision(True, self.burst, self.burst, 0, 0)

    async def check(self, key_id: str, cost: int = 1) -> Decision:
        if self._open_until and time.monotonic() < self._open_until:
            return self._open()
        try:
            allowed, remaining, retry_us, full_us = await self._script(
                keys=[self.prefix + key_id], args=[self.rate, self.burst, cost]
            )
        except (RedisError, OSError) as exc:
            self._open_until = time.monotonic() + self.open_seconds
            log.warning("rate limiter unavailable, failing open", error=type(exc).__name__)
            return self._open()
        self._open_until = 0.0
        return Decision(
            allowed=bool(allowed),
            limit=self.burst,
            remaining=int(remaining),
            retry_after=math.ceil(int(retry_us) / 1_000_000) if not allowed else 0,
            reset=math.ceil(int(full_us) / 1_000_000),
        )
