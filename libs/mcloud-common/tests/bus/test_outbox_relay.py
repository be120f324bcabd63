"""The outbox and its relay: atomic with the producer's transaction, in order, nothing lost."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
import redis.asyncio as aioredis

from mcloud_common.bus import OutboxRelay, StreamConsumer, decode, enqueue, stream_for
from mcloud_common.embedded import EmbeddedValkey, free_port


async def _stream_ids(redis, stream: str) -> list[str]:
    return [decode(fields).id for _, fields in await redis.xrange(stream)]


async def _drain(relay: OutboxRelay) -> int:
    total = 0
    while n := await relay.run_once():
        total += n
    return total


async def test_enqueue_is_part_of_the_callers_transaction(bus_pool, producer, make_event):
    async with bus_pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await enqueue(conn, [make_event("a"), make_event("b")], producer=producer, shards=4)
                raise RuntimeError("use case failed")
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
        events = [make_event(f"p{i}") for i in range(500)]
        async with conn.transaction():
            await enqueue(conn, events, producer=producer, shards=4)
        rows = await conn.fetch("SELECT stream, event_id::text AS id FROM outbox ORDER BY id")
        assert [r["id"] for r in rows] == [e.id for e in events]
        assert [r["stream"] for r in rows] == [stream_for(e, producer, 4) for e in events]


async def test_enqueue_rejects_non_uuid_ids_and_ignores_empty_batches(bus_pool, producer, make_event):
    async with bus_pool.acquire() as conn:
        await enqueue(conn, [], producer=producer, shards=4)
        bad = make_event("a")
        bad.id = "not-a-uuid"
        with pytest.raises(ValueError, match="UUID"):
            await enqueue(conn, [bad], producer=producer, shards=4)


async def test_relay_publishes_everything_in_order_per_stream_and_empties_the_outbox(
    bus_pool, redis, producer, make_event
):
    events = [make_event(p) for _ in range(100) for p in ("rachel", "monica", "ross", "joey")]
    async with bus_pool.acquire() as conn:
        for chunk in range(0, len(events), 50):  # several producer transactions
            async with conn.transaction():
                await enqueue(conn, events[chunk : chunk + 50], producer=producer, shards=3)
    relay = OutboxRelay(bus_pool, redis, batch_size=64)
    assert await relay.backlog() == 400
    assert await _drain(relay) == 400
    assert await relay.backlog() == 0
    expected = defaultdict(list)
    for e in events:
        expected[stream_for(e, producer, 3)].append(e.id)
    for stream, ids in expected.items():
        assert await _stream_ids(redis, stream) == ids
    assert relay.published_total == 400


async def test_events_committed_while_no_relay_runs_are_published_by_a_later_relay(
    bus_pool, redis, producer, make_event, wait_until
):
    # the producer committed, then died before anything published: the rows just wait
    events = [make_event("rachel") for _ in range(20)]
    async with bus_pool.acquire() as conn, conn.transaction():
        await enqueue(conn, events, producer=producer, shards=2)
    stream = stream_for(events[0], producer, 2)
    assert await redis.exists(stream) == 0
    relay = OutboxRelay(bus_pool, redis, poll_interval=0.05)
    relay.start()
    try:
        await wait_until(lambda: redis.xlen(stream), timeout=5)
        await wait_until(lambda: _backlog_is(relay, 0))
        assert await _stream_ids(redis, stream) == [e.id for e in events]
    finally:
        await relay.stop()


async def _backlog_is(relay: OutboxRelay, n: int) -> bool:
    return await relay.backlog() == n


async def test_running_relay_wakes_on_notify_without_waiting_for_the_poll(
    bus_pool, redis, producer, make_event, wait_until
):
    relay = OutboxRelay(bus_pool, redis, poll_interval=30)
    relay.start()
    try:
        await wait_until(lambda: relay._listener is not None)
        event = make_event("monica")
        async with bus_pool.acquire() as conn, conn.transaction():
            await enqueue(conn, [event], producer=producer, shards=1)
        await wait_until(lambda: redis.exists(f"events.{producer}.0"), timeout=3)
        assert await _stream_ids(redis, f"events.{producer}.0") == [event.id]
    finally:
        await relay.stop()


async def test_crash_between_publish_and_commit_republishes_and_consumer_applies_once(
    bus_pool, redis, producer, make_event, recording_handler
):
    events = [make_event(p) for p in ("rachel", "ross") for _ in range(10)]
    async with bus_pool.acquire() as conn, conn.transaction():
        await enqueue(conn, events, producer=producer, shards=2)
    relay = OutboxRelay(bus_pool, redis)

    def die(rows):
        raise SystemError("relay killed after XADD, before commit")

    relay._after_publish = die
    with pytest.raises(SystemError):
        await relay.run_once()
    assert await relay.backlog() == 20  # rolled back: rows still there
    streams = {stream_for(e, producer, 2) for e in events}
    assert sum([await redis.xlen(s) for s in streams]) == 20  # ... but already published

    relay._after_publish = None  # "restart"
    assert await _drain(relay) == 20
    assert await relay.backlog() == 0
    assert sum([await redis.xlen(s) for s in streams]) == 40  # every event twice on the bus

    consumer = StreamConsumer(
        redis=redis, pool=bus_pool, group="loyalty", producers=[producer], shards=2,
        handler=recording_handler, block_ms=10,
    )
    while await consumer.run_once():
        pass
    assert sorted(recording_handler.calls) == sorted(e.id for e in events)
    assert await bus_pool.fetchval("SELECT count(*) FROM effects") == 20
    assert await bus_pool.fetchval("SELECT count(DISTINCT event_id) FROM effects") == 20
    assert consumer.duplicates_total == 20
    assert sum((await consumer.lag()).values()) == 0


async def test_relay_loop_survives_failing_cycles_and_backs_off(
    bus_pool, redis, producer, make_event, wait_until
):
    failures = 0

    def flaky(rows):
        nonlocal failures
        if failures < 3:
            failures += 1
            raise ConnectionError("redis went away")

    relay = OutboxRelay(bus_pool, redis, poll_interval=0.02, max_backoff=0.2)
    relay._after_publish = flaky
    event = make_event("joey")
    async with bus_pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [event], producer=producer, shards=1)
    relay.start()
    try:
        await wait_until(lambda: _backlog_is(relay, 0), timeout=5)
        assert failures == 3
        assert relay._task is not None and not relay._task.done()
    finally:
        await relay.stop()


async def test_concurrent_relays_keep_per_stream_order(bus_pool, redis, producer, make_event, wait_until):
    events = [make_event("rachel") for _ in range(600)]
    relays = [OutboxRelay(bus_pool, redis, batch_size=25, poll_interval=0.01) for _ in range(3)]
    for relay in relays:
        relay.start()
    try:
        async with bus_pool.acquire() as conn:
            for chunk in range(0, 600, 30):
                async with conn.transaction():
                    await enqueue(conn, events[chunk : chunk + 30], producer=producer, shards=1)
        stream = f"events.{producer}.0"
        await wait_until(lambda: _xlen_is(redis, stream, 600), timeout=10)
        assert await _stream_ids(redis, stream) == [e.id for e in events]
    finally:
        await asyncio.gather(*(relay.stop() for relay in relays))


async def _xlen_is(redis, stream: str, n: int) -> bool:
    return await redis.xlen(stream) >= n


async def test_relay_keeps_going_when_redis_is_down_for_a_while(
    bus_pool, tmp_path, producer, make_event, wait_until
):
    server = EmbeddedValkey(tmp_path / "valkey", free_port())
    server.start(persist=False)
    client = aioredis.from_url(server.url, socket_timeout=2, socket_connect_timeout=1)
    relay = OutboxRelay(bus_pool, client, poll_interval=0.02, max_backoff=0.1)
    stream = f"events.{producer}.0"
    try:
        relay.start()
        before, during = make_event("ross"), make_event("ross")
        async with bus_pool.acquire() as conn, conn.transaction():
            await enqueue(conn, [before], producer=producer, shards=1)
        await wait_until(lambda: _backlog_is(relay, 0))
        server.stop()
        async with bus_pool.acquire() as conn, conn.transaction():
            await enqueue(conn, [during], producer=producer, shards=1)
        await wait_until(lambda: relay.failures_total >= 2)
        assert await relay.backlog() == 1  # kept, not lost
        server.start(persist=False)
        await wait_until(lambda: _backlog_is(relay, 0), timeout=10)
        assert await _stream_ids(client, stream) == [during.id]  # the restarted server lost `before`
        assert not relay._task.done()
    finally:
        await relay.stop()
        await client.aclose()
        server.destroy()
