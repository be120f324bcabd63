"""Consuming other services' events: one Redis consumer group per consuming service, idempotent
handling in the consumer's own database, retries, and a dead-letter path for poison messages.

Per message, in ONE transaction of the consumer's database: record (group, event id) in
processed_events (ON CONFLICT DO NOTHING; a conflict means already handled: skip), run the
handler on the same connection, commit, then XACK. Each stream is handled strictly in order: a
message that is not acked (failing handler, infrastructure error) stops its stream for the cycle,
and on the next cycle the consumer first re-reads its own pending messages of that stream (XREADGROUP
from id 0, in order) before it takes anything new from it; other streams (shards) keep flowing.
Messages of a dead consumer are re-claimed with XAUTOCLAIM after `claim_idle_ms`. A message that
fails on its `max_deliveries`-th delivery, or cannot be decoded, goes to the dead_letters table and
the `dlq.<group>` stream and is acked, so it blocks its stream only for those few cycles.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from opentelemetry import trace
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mcloud.events.v1 import event_pb2
from mcloud_common.bus._loop import Backoff, stop_task, wait_any
from mcloud_common.bus.streams import (
    UndecodableEvent,
    decode,
    dlq_stream,
    entry_payload,
    entry_type,
    stream_name,
)
from mcloud_common.logs import get_logger
from mcloud_common.telemetry import extract_context

log = get_logger(__name__)

Handler = Callable[[event_pb2.Event, asyncpg.Connection], Awaitable[None]]
BatchHandler = Callable[[list[event_pb2.Event], asyncpg.Connection], Awaitable[None]]

# Failures of the plumbing, not of the message: they never count towards dead-lettering, the cycle
# is abandoned (message stays pending) and the loop backs off.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    RedisConnectionError,
    RedisTimeoutError,
)

_MARK_MANY_PROCESSED = """
    INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::uuid[])
    ON CONFLICT DO NOTHING RETURNING event_id
"""
_MARK_PROCESSED = """
    INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)
    ON CONFLICT DO NOTHING
"""
_DEAD_LETTER = """
    INSERT INTO dead_letters (consumer, stream, message_id, event_id, payload, error, deliveries)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
_MAX_ERROR_CHARS = 2000


_running: weakref.WeakSet[StreamConsumer] = weakref.WeakSet()


def running_consumers() -> list[StreamConsumer]:
    """The consumers of this process that run in the background (started and not stopped), for metrics."""
    return [c for c in _running if c._task is not None and not c._task.done()]


def default_consumer_name() -> str:
    """Unique per process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _stream_entries(response: Any) -> list[tuple[Any, list]]:
    """(stream, entries) pairs from an XREADGROUP reply in either RESP2 or RESP3 shape."""
    if not response:
        return []
    if isinstance(response, Mapping):
        items = list(response.items())
        # RESP3 legacy shape wraps the entry list in one more list
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in items]
    return [(pair[0], pair[1]) for pair in response]


class StreamConsumer:
    """Reads `events.<producer>.<shard>` for every producer and shard as consumer group `group`
    and applies `handler` exactly once per event id in the consumer's database (`pool`)."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        pool: asyncpg.Pool,
        group: str,
        producers: Iterable[str],
        shards: int,
        handler: Handler,
        consumer: str | None = None,
        types: Iterable[str] | None = None,
        accept: Callable[[event_pb2.Event], bool] | None = None,
        batch_handler: BatchHandler | None = None,
        only_shards: Iterable[int] | None = None,
        max_deliveries: int = 5,
        block_ms: int = 1000,
        count: int = 100,
        claim_idle_ms: int = 30_000,
        dlq_maxlen: int | None = 100_000,
        max_backoff: float = 5.0,
        tracer: trace.Tracer | None = None,
    ) -> None:
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be >= 1")
        self._redis = redis
        self._pool = pool
        self.group = group
        self.consumer = consumer or default_consumer_name()
        shard_ids = list(range(shards)) if only_shards is None else list(only_shards)
        self.streams = [stream_name(p, s) for p in producers for s in shard_ids]
        if not self.streams:
            raise ValueError("a consumer needs at least one producer and one shard")
        self.handler = handler
        self.types = frozenset(types) if types is not None else None
        # a cheap in-memory filter on the decoded event: rejected events are acked without touching
        # the database (e.g. behaviour events nobody here reacts to)
        self.accept = accept
        # optional: a stream's entries of one read applied in ONE transaction (processed_events marked
        # for all, then batch_handler(new events in order)); if that fails, the entries go through the
        # one-by-one path (retries, dead letters) as if there were no batch handler
        self.batch_handler = batch_handler
        self.batches_total = 0
        self.max_deliveries = max_deliveries
        self.block_ms = block_ms
        self.count = count
        self.claim_idle_ms = claim_idle_ms
        self.dlq_maxlen = dlq_maxlen
        self.max_backoff = max_backoff
        self._tracer = tracer or trace.get_tracer("mcloud_common.bus")
        self._groups_ready = False
        self._next_claim = 0.0
        # streams whose own pending entries (PEL) must be re-read, in order, before anything new;
        # all of them at start, in case a previous process with this consumer name left some
        self._replay: set[str] = set(self.streams)
        self._task: asyncio.Task | None = None
        self._stop: asyncio.Event | None = None
        # counters for metrics
        self.handled_total = 0
        self.duplicates_total = 0
        self.skipped_total = 0
        self.failures_total = 0
        self.dead_lettered_total = 0

    # --- set-up -------------------------------------------------------------------------------

    async def ensure_groups(self) -> None:
        """Create the group on every stream (MKSTREAM, from id 0); an existing group is kept."""
        pipe = self._redis.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xgroup_create(stream, self.group, id="0", mkstream=True)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                raise result
        self._groups_ready = True

    # --- one cycle ----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Re-read this consumer's own pending entries of streams that stopped on a failure,
        re-claim idle pending messages of other consumers (when due), read new ones (blocking up to
        block_ms when there is nothing to retry) and handle them; the number of entries taken."""
        if not self._groups_ready:
            await self.ensure_groups()
        batches: dict[str, list[tuple[str, Any]]] = {}
        if self._replay:
            replay = [s for s in self.streams if s in self._replay]
            for stream, entries in await self._read(replay, "0", block=False):
                if entries:
                    batches[stream] = entries
            # an empty PEL: the stream caught up and reads new entries again, from this cycle on
            self._replay.intersection_update(batches)
        fresh = [s for s in self.streams if s not in batches]
        if fresh and time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.claim_idle_ms / 2000
            await self._reclaim(fresh, batches)
        if fresh:
            for stream, entries in await self._read(fresh, ">", block=not batches):
                batches.setdefault(stream, []).extend(entries)
        if not batches:
            return 0
        results = await asyncio.gather(
            *(self._handle_stream(stream, entries) for stream, entries in batches.items()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return sum(len(entries) for entries in batches.values())

    async def _read(self, streams: list[str], from_id: str, *, block: bool) -> list[tuple[str, list]]:
        """XREADGROUP on `streams`: new entries (`from_id` ">") or this consumer's pending ones
        ("0"; an entry deleted from the stream meanwhile comes back with empty fields)."""
        block_ms = self.block_ms if block and self.block_ms > 0 else None  # BLOCK 0 would mean forever
        try:
            response = await self._xreadgroup(streams, from_id, block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # the server lost the stream or group (e.g. restarted without persistence): recreate
            log.warning("consumer group missing, recreating", group=self.group)
            await self.ensure_groups()
            response = await self._xreadgroup(streams, from_id, block_ms)
        return [
            (_text(stream), [(_text(mid), fields) for mid, fields in entries if fields is not None])
            for stream, entries in _stream_entries(response)
        ]

    async def _xreadgroup(self, streams: list[str], from_id: str, block_ms: int | None) -> Any:
        return await self._redis.xreadgroup(
            self.group, self.consumer, dict.fromkeys(streams, from_id), count=self.count, block=block_ms
        )

    async def _reclaim(self, streams: list[str], batches: dict[str, list[tuple[str, Any]]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for stream in streams:
            pipe.xautoclaim(
                stream, self.group, self.consumer, min_idle_time=self.claim_idle_ms,
                start_id="0-0", count=self.count,
            )
        for stream, result in zip(streams, await pipe.execute(raise_on_error=False), strict=True):
            if isinstance(result, Exception):
                if "NOGROUP" in str(result):
                    self._groups_ready = False
                    continue
                raise result
            entries = [(_text(mid), fields) for mid, fields in result[1] if fields]
            if entries:
                batches[stream] = entries

    async def _handle_stream(self, stream: str, entries: list[tuple[str, Any]]) -> None:
        # one stream's entries strictly in order; different streams (shards) run concurrently.
        # The first entry not done with stops the stream: the ones behind it stay pending and are
        # re-read from this consumer's PEL, in order, on the next cycle.
        acks: list[str] = []
        if self.batch_handler is not None and len(entries) > 1 and await self._handle_batch(stream, entries):
            await self._redis.xack(stream, self.group, *(message_id for message_id, _ in entries))
            return
        try:
            for message_id, fields in entries:
                if not await self._handle(stream, message_id, fields):
                    break
                acks.append(message_id)
        finally:
            stopped = len(acks) < len(entries)
            if stopped:
                self._replay.add(stream)
            try:
                if acks:
                    await self._redis.xack(stream, self.group, *acks)
            except BaseException:
                self._replay.add(stream)
                raise
            if stopped:
                await self._undo_deliveries(stream, [mid for mid, _ in entries[len(acks) + 1 :]])

    async def _undo_deliveries(self, stream: str, message_ids: list[str]) -> None:
        """The entries behind a stopped one were delivered but never tried: take that delivery
        back, so `max_deliveries` counts attempts rather than the failures of an earlier entry."""
        if not message_ids:
            return
        pipe = self._redis.pipeline(transaction=False)
        for message_id in message_ids:
            pipe.xpending_range(
                stream, self.group, min=message_id, max=message_id, count=1, consumername=self.consumer
            )
        by_count: dict[int, list[str]] = {}
        for message_id, pending in zip(message_ids, await pipe.execute(), strict=True):
            if pending:
                count = max(int(pending[0]["times_delivered"]) - 1, 0)
                by_count.setdefault(count, []).append(message_id)
        if not by_count:
            return
        pipe = self._redis.pipeline(transaction=False)
        for count, ids in by_count.items():
            pipe.xclaim(stream, self.group, self.consumer, 0, ids, retrycount=count, justid=True)
        await pipe.execute()

    async def _handle(self, stream: str, message_id: str, fields: Mapping) -> bool:
        """Handle one entry; True when it is done with (to be acked)."""
        if not fields:
            # still pending here but trimmed or deleted from the stream: nothing left to apply
            log.warning(
                "pending entry gone from the stream", group=self.group, stream=stream, message_id=message_id
            )
            return True
        if self.types is not None:
            hinted = entry_type(fields)
            if hinted and hinted not in self.types:
                self.skipped_total += 1
                return True
        try:
            event = decode(fields)
            event_id = uuid.UUID(event.id)
        except (UndecodableEvent, ValueError) as exc:
            deliveries = await self._deliveries(stream, message_id)
            await self._dead_letter(stream, message_id, fields, None, f"undecodable: {exc}", deliveries)
            return True
        if (self.types is not None and event.type not in self.types) or (
                self.accept is not None and not self.accept(event)):
            self.skipped_total += 1
            return True
        try:
            await self._apply(stream, message_id, event, event_id)
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception as exc:
            self.failures_total += 1
            deliveries = await self._deliveries(stream, message_id)
            error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
            if deliveries >= self.max_deliveries:
                await self._dead_letter(stream, message_id, fields, event_id, error, deliveries)
                return True
            log.warning(
                "event handler failed, will retry", group=self.group, stream=stream,
                message_id=message_id, event_id=event.id, event_type=event.type,
                deliveries=deliveries, error=error,
            )
            return False
        return True

    async def _handle_batch(self, stream: str, entries: list[tuple[str, Any]]) -> bool:
        """Apply a stream's entries in one transaction; False (nothing applied) sends them down the
        one-by-one path: an entry that cannot be decoded, or a failing batch handler."""
        events: list[tuple[event_pb2.Event, uuid.UUID]] = []
        for _, fields in entries:
            if not fields:
                continue
            if self.types is not None and (hinted := entry_type(fields)) and hinted not in self.types:
                self.skipped_total += 1
                continue
            try:
                event = decode(fields)
                event_id = uuid.UUID(event.id)
            except (UndecodableEvent, ValueError):
                return False
            if (self.types is not None and event.type not in self.types) or (
                    self.accept is not None and not self.accept(event)):
                self.skipped_total += 1
                continue
            events.append((event, event_id))
        if not events:
            return True
        # the batch's span links to the trace of every event it applies
        contexts = [trace.get_current_span(extract_context(e.trace.traceparent, e.trace.tracestate)).get_span_context()
                    for e, _ in events if e.trace.traceparent]
        links = [trace.Link(c) for c in contexts if c.is_valid]
        with self._tracer.start_as_current_span(
            "process batch", kind=trace.SpanKind.CONSUMER, links=links,
            attributes={"messaging.system": "redis", "messaging.operation.type": "process",
                        "messaging.destination.name": stream, "messaging.consumer.group.name": self.group,
                        "messaging.batch.message_count": len(events)},
        ):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    fresh = {r["event_id"] for r in await conn.fetch(
                        _MARK_MANY_PROCESSED, self.group, [event_id for _, event_id in events])}
                    todo = []
                    for event, event_id in events:
                        if event_id in fresh:
                            fresh.discard(event_id)  # the first of repeated ids within the batch only
                            todo.append(event)
                    if todo:
                        await self.batch_handler(todo, conn)
            except INFRASTRUCTURE_ERRORS:
                raise
            except Exception as exc:
                log.warning("batch failed, handling its entries one by one", group=self.group, stream=stream,
                            entries=len(entries), error=f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS])
                return False
        self.batches_total += 1
        self.handled_total += len(todo)
        self.duplicates_total += len(events) - len(todo)
        return True

    async def _apply(self, stream: str, message_id: str, event: event_pb2.Event, event_id: uuid.UUID) -> None:
        tc = event.trace
        parent = extract_context(tc.traceparent, tc.tracestate) if tc.traceparent else None
        with self._tracer.start_as_current_span(
            f"process {event.type}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "redis",
                "messaging.operation.type": "process",
                "messaging.destination.name": stream,
                "messaging.consumer.group.name": self.group,
                "messaging.message.id": message_id,
                "mcloud.event.id": event.id,
                "mcloud.event.type": event.type,
                "mcloud.tenant_id": event.tenant_id,
            },
        ) as span:
            async with self._pool.acquire() as conn, conn.transaction():
                status = await conn.execute(_MARK_PROCESSED, self.group, event_id)
                if status.endswith(" 0"):
                    span.set_attribute("mcloud.event.duplicate", True)
                    self.duplicates_total += 1
                    return
                await self.handler(event, conn)
        self.handled_total += 1

    async def _deliveries(self, stream: str, message_id: str) -> int:
        pending = await self._redis.xpending_range(
            stream, self.group, min=message_id, max=message_id, count=1
        )
        return int(pending[0]["times_delivered"]) if pending else 1

    async def _dead_letter(
        self, stream: str, message_id: str, fields: Mapping, event_id: uuid.UUID | None,
        error: str, deliveries: int,
    ) -> None:
        await self._pool.execute(
            _DEAD_LETTER, self.group, stream, message_id, event_id, entry_payload(fields), error, deliveries
        )
        dlq_fields = {
            **{k if isinstance(k, bytes) else str(k).encode(): v for k, v in fields.items()},
            b"stream": stream.encode(),
            b"message_id": message_id.encode(),
            b"error": error.encode(),
            b"deliveries": str(deliveries).encode(),
        }
        await self._redis.xadd(dlq_stream(self.group), dlq_fields, maxlen=self.dlq_maxlen, approximate=True)
        self.dead_lettered_total += 1
        log.error(
            "event dead-lettered", group=self.group, stream=stream, message_id=message_id,
            event_id=str(event_id) if event_id else None, deliveries=deliveries, error=error,
        )

    # --- metrics ------------------------------------------------------------------------------

    async def lag(self) -> dict[str, int]:
        """Per stream: entries not yet delivered to the group plus entries delivered but not acked.
        When the server cannot tell the undelivered count (after deletions) the stream length is
        used as an upper bound."""
        pipe = self._redis.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xinfo_groups(stream)
            pipe.xlen(stream)
        results = await pipe.execute(raise_on_error=False)
        lags: dict[str, int] = {}
        for i, stream in enumerate(self.streams):
            groups, length = results[2 * i], results[2 * i + 1]
            length = 0 if isinstance(length, Exception) else int(length)
            info = None
            if not isinstance(groups, Exception):
                info = next((g for g in groups if _text(g.get("name")) == self.group), None)
            if info is None:
                lags[stream] = length
                continue
            undelivered = info.get("lag")
            undelivered = length if undelivered is None else int(undelivered)
            lags[stream] = undelivered + int(info.get("pending") or 0)
        return lags

    # --- running ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; errors are logged and retried with capped back-off."""
        backoff = Backoff(0.1, self.max_backoff)
        while not stop.is_set():
            try:
                await self.run_once()
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.next_delay()
                log.warning("consumer cycle failed", group=self.group, error=repr(exc), retry_in_s=delay)
                self._groups_ready = False
                await wait_any([stop], delay)

    def start(self) -> asyncio.Task:
        """Run in a background task until `stop()`."""
        if self._task is not None and not self._task.done():
            return self._task
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.run(self._stop), name=f"consumer-{self.group}")
        _running.add(self)
        return self._task

    async def stop(self, grace: float | None = None) -> None:
        """Finish the current cycle (cancel after `grace` seconds; by default one block_ms read
        plus 5 s), then stop."""
        await stop_task(self._task, self._stop, self.block_ms / 1000 + 5 if grace is None else grace)
        self._task = None
        _running.discard(self)
