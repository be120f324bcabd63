"""The outbox relay: moves committed outbox rows to Redis Streams, in id order, at least once.

Rows are deleted in the same transaction that claimed them, after the XADDs succeeded; a crash
between the XADD and the commit publishes those rows again (consumers dedupe on the event id).
One relay per database works at a time (a transaction-scoped advisory lock), so per-stream order
holds even when every replica of a service runs a relay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import redis.asyncio as aioredis
from google.protobuf.message import DecodeError

from mcloud.events.v1 import event_pb2
from mcloud_common.bus._loop import Backoff, stop_task, wait_any
from mcloud_common.bus.schema import NOTIFY_CHANNEL
from mcloud_common.bus.streams import FIELD_EVENT, FIELD_TENANT, FIELD_TYPE, encode
from mcloud_common.logs import get_logger

log = get_logger(__name__)

# pg_try_advisory_xact_lock key ("mcloudrx" in ASCII): any constant unique to this purpose
RELAY_LOCK_KEY = 0x6D636C6F75647278

# No row locks needed: the advisory lock below lets one relay per database work at a time, and
# locking every row would cost each event one more heap write.
_CLAIM = """
    SELECT id, stream, type, tenant_id, payload FROM outbox
    ORDER BY id
    LIMIT $1
"""

# One round trip and one reply per batch instead of one per event (the pipeline's per-command
# packing and reply parsing was a fifth of identity's CPU under ingest load).
_XADD_MANY = """
local maxlen = ARGV[1]
for i = 1, #KEYS do
    local a = 2 + (i - 1) * 3
    if maxlen == '' then
        redis.call('XADD', KEYS[i], '*', 'e', ARGV[a], 't', ARGV[a + 1], 'tn', ARGV[a + 2])
    else
        redis.call('XADD', KEYS[i], 'MAXLEN', '~', maxlen, '*', 'e', ARGV[a], 't', ARGV[a + 1], 'tn', ARGV[a + 2])
    end
end
return #KEYS
"""

def _fields(payload: bytes) -> dict[bytes, bytes]:
    try:
        return encode(event_pb2.Event.FromString(payload), payload)
    except DecodeError:
        # never stall the outbox on one bad row: publish it as is, consumers dead-letter it
        return {FIELD_EVENT: payload, FIELD_TYPE: b"", FIELD_TENANT: b""}


AfterPublish = Callable[[Sequence[asyncpg.Record]], Awaitable[None] | None]


class OutboxRelay:
    """Publishes a service's outbox to Redis Streams. `start()`/`stop()` run it in the background."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        *,
        batch_size: int = 1000,
        maxlen: int | None = None,
        poll_interval: float = 0.2,
        max_backoff: float = 5.0,
        publish_timeout: float = 10.0,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self.batch_size = batch_size
        self.maxlen = maxlen
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        # a hung Redis must not hold the claimed rows' locks forever
        self.publish_timeout = publish_timeout
        self.published_total = 0
        self.failures_total = 0
        # Test hook: called with the claimed rows after their XADDs, before the DELETE and commit.
        # Raising from it simulates a relay that dies between publishing and committing.
        self._after_publish: AfterPublish | None = None
        self._xadd_many = redis.register_script(_XADD_MANY)
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self._stop: asyncio.Event | None = None

    async def run_once(self) -> int:
        """Publish up to `batch_size` outbox rows in one transaction; the number published
        (0 when the outbox is empty or another relay holds the lock)."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RELAY_LOCK_KEY):
                return 0
            rows = await conn.fetch(_CLAIM, self.batch_size)
            if not rows:
                return 0
            keys: list[str] = []
            args: list[bytes | str] = ["" if self.maxlen is None else str(self.maxlen)]
            for row in rows:
                keys.append(row["stream"])
                if row["type"] or row["tenant_id"]:
                    args += [row["payload"], row["type"], row["tenant_id"]]
                else:  # a row written without type/tenant: read them from the envelope
                    fields = _fields(row["payload"])
                    args += [fields[FIELD_EVENT], fields[FIELD_TYPE], fields[FIELD_TENANT]]
            async with asyncio.timeout(self.publish_timeout):
                await self._xadd_many(keys=keys, args=args)
            if self._after_publish is not None:
                result = self._after_publish(rows)
                if asyncio.iscoroutine(result):
                    await result
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
        self.published_total += len(rows)
        return len(rows)

    async def backlog(self) -> int:
        """Rows waiting in the outbox (for the queue-depth metric)."""
        return await self._pool.fetchval("SELECT count(*) FROM outbox")

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set: drain while batches come back full, otherwise wait for a
        NOTIFY or the poll interval. Errors (Redis or Postgres down) are logged and retried with
        capped exponential back-off; the loop never dies of them."""
        backoff = Backoff(0.1, self.max_backoff)
        try:
            while not stop.is_set():
                try:
                    await self._ensure_listener()
                    self._wake.clear()
                    published = await self.run_once()
                    backoff.reset()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.failures_total += 1
                    delay = backoff.next_delay()
                    log.warning("outbox relay cycle failed", error=repr(exc), retry_in_s=delay)
                    await self._drop_listener()
                    await wait_any([stop], delay)
                    continue
                if published < self.batch_size:
                    await wait_any([stop, self._wake], self.poll_interval)
        finally:
            await self._drop_listener()

    def start(self) -> asyncio.Task:
        """Run in a background task until `stop()`."""
        if self._task is not None and not self._task.done():
            return self._task
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.run(self._stop), name="outbox-relay")
        return self._task

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the current cycle (cancel after `grace` seconds) and stop."""
        await stop_task(self._task, self._stop, grace)
        self._task = None

    def _notified(self, *_args: object) -> None:
        self._wake.set()

    async def _ensure_listener(self) -> None:
        # A dedicated pooled connection LISTENs; NOTIFY only shortens the wait, polling still
        # covers a missed one, so failing to listen is not fatal to a cycle.
        if self._listener is not None and not self._listener.is_closed():
            return
        await self._drop_listener()
        conn = await self._pool.acquire()
        try:
            await conn.add_listener(NOTIFY_CHANNEL, self._notified)
        except BaseException:
            await self._pool.release(conn)
            raise
        self._listener = conn

    async def _drop_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if not conn.is_closed():
                await conn.remove_listener(NOTIFY_CHANNEL, self._notified)
        with contextlib.suppress(Exception):
            await self._pool.release(conn)
