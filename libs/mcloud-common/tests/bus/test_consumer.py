"""Consumers: exactly-once effects, type filters, retries, dead letters, lag, trace context."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mcloud.events.v1 import event_pb2
from mcloud_common.bus import StreamConsumer, decode, dlq_stream, publish


def _consumer(redis, pool, producer, handler, *, group: str = "loyalty", shards: int = 2, **kw):
    kw.setdefault("block_ms", 10)
    return StreamConsumer(
        redis=redis, pool=pool, group=group, producers=[producer], shards=shards, handler=handler, **kw
    )


async def _until_idle(consumer: StreamConsumer, max_cycles: int = 50) -> None:
    for _ in range(max_cycles):
        if not await consumer.run_once():
            return
    raise AssertionError("consumer never went idle")


async def _effects(pool) -> list[str]:
    return [str(r["event_id"]) for r in await pool.fetch("SELECT event_id FROM effects ORDER BY id")]


async def test_same_event_published_twice_is_applied_once(
    bus_pool, redis, producer, make_event, recording_handler
):
    events = [make_event(f"p{i % 3}") for i in range(12)]
    await publish(redis, events, producer, 2)
    await publish(redis, events[:5], producer, 2)  # at-least-once: a relay re-sent some
    consumer = _consumer(redis, bus_pool, producer, recording_handler)
    await _until_idle(consumer)
    assert sorted(await _effects(bus_pool)) == sorted(e.id for e in events)
    assert len(recording_handler.calls) == 12
    assert consumer.duplicates_total == 5
    assert await bus_pool.fetchval("SELECT count(*) FROM processed_events WHERE consumer = 'loyalty'") == 12
    assert sum((await consumer.lag()).values()) == 0


async def test_each_stream_is_applied_in_publish_order(
    bus_pool, redis, producer, make_event, recording_handler
):
    events = [make_event(p) for _ in range(40) for p in ("rachel", "ross")]
    await publish(redis, events, producer, 4)
    await _until_idle(_consumer(redis, bus_pool, producer, recording_handler, shards=4, count=7))
    applied = await _effects(bus_pool)
    for profile in ("rachel", "ross"):
        mine = {e.id for e in events if e.profile_id == profile}
        assert [i for i in applied if i in mine] == [e.id for e in events if e.profile_id == profile]


async def test_two_groups_each_get_every_event(bus_pool, redis, producer, make_event, recording_handler):
    events = [make_event("monica") for _ in range(5)]
    await publish(redis, events, producer, 2)
    for group in ("loyalty", "journey"):
        await _until_idle(_consumer(redis, bus_pool, producer, recording_handler, group=group))
    assert len(await _effects(bus_pool)) == 10


async def test_types_filter_acks_other_events_without_calling_the_handler(
    bus_pool, redis, producer, make_event, recording_handler
):
    wanted = make_event("joey", type="order.completed")
    others = [make_event("joey", type="page"), make_event("joey", type="screen")]
    await publish(redis, [others[0], wanted, others[1]], producer, 2)
    consumer = _consumer(redis, bus_pool, producer, recording_handler, types={"order.completed"})
    await _until_idle(consumer)
    assert recording_handler.calls == [wanted.id]
    assert consumer.skipped_total == 2
    assert sum((await consumer.lag()).values()) == 0


async def test_failed_handler_leaves_message_pending_and_it_is_retried(
    bus_pool, redis, producer, make_event, recording_handler
):
    event = make_event("phoebe")
    attempts = 0

    async def flaky(ev, conn):
        nonlocal attempts
        attempts += 1
        await recording_handler(ev, conn)  # its write must roll back with the failure
        if attempts == 1:
            raise RuntimeError("downstream hiccup")

    await publish(redis, [event], producer, 1)
    consumer = _consumer(redis, bus_pool, producer, flaky, shards=1, claim_idle_ms=0)
    assert await consumer.run_once() == 1
    assert await _effects(bus_pool) == []
    assert await bus_pool.fetchval("SELECT count(*) FROM processed_events") == 0
    pending = await redis.xpending(f"events.{producer}.0", "loyalty")
    assert pending["pending"] == 1
    await _until_idle(consumer)
    assert attempts == 2
    assert await _effects(bus_pool) == [event.id]
    assert (await redis.xpending(f"events.{producer}.0", "loyalty"))["pending"] == 0


async def test_poison_message_is_dead_lettered_after_max_deliveries_and_others_flow(
    bus_pool, redis, producer, make_event, recording_handler
):
    poison, good1, good2 = (make_event("chandler") for _ in range(3))
    attempts = 0

    async def handler(ev, conn):
        nonlocal attempts
        if ev.id == poison.id:
            attempts += 1
            raise ValueError("cannot apply this one")
        await recording_handler(ev, conn)

    await publish(redis, [poison, good1], producer, 1)
    consumer = _consumer(redis, bus_pool, producer, handler, shards=1, claim_idle_ms=0, max_deliveries=3)
    await consumer.run_once()
    assert await _effects(bus_pool) == [good1.id]  # the poison did not block the next message
    await publish(redis, [good2], producer, 1)
    await _until_idle(consumer)
    assert attempts == 3
    assert await _effects(bus_pool) == [good1.id, good2.id]
    row = await bus_pool.fetchrow("SELECT * FROM dead_letters")
    assert row["consumer"] == "loyalty"
    assert row["stream"] == f"events.{producer}.0"
    assert str(row["event_id"]) == poison.id
    assert row["deliveries"] == 3
    assert "ValueError: cannot apply this one" in row["error"]
    assert event_pb2.Event.FromString(row["payload"]) == poison
    dlq = await redis.xrange(dlq_stream("loyalty"), count=1000)
    mine = [fields for _, fields in dlq if fields[b"stream"] == f"events.{producer}.0".encode()]
    assert len(mine) == 1 and decode(mine[0]) == poison
    assert mine[0][b"message_id"].decode() == row["message_id"]
    assert (await redis.xpending(f"events.{producer}.0", "loyalty"))["pending"] == 0
    assert consumer.dead_lettered_total == 1
    # never marked processed: a fixed handler can replay it from the dead letters
    assert await bus_pool.fetchval("SELECT count(*) FROM processed_events") == 2


async def test_undecodable_entry_goes_straight_to_dead_letters(
    bus_pool, redis, producer, make_event, recording_handler
):
    stream = f"events.{producer}.0"
    good = make_event("gunther")
    await redis.xadd(stream, {b"e": b"\xff\x00 garbage", b"t": b"track", b"tn": b"t1"})
    await publish(redis, [good], producer, 1)
    consumer = _consumer(redis, bus_pool, producer, recording_handler, shards=1)
    await _until_idle(consumer)
    assert await _effects(bus_pool) == [good.id]
    row = await bus_pool.fetchrow("SELECT * FROM dead_letters")
    assert row["event_id"] is None and row["deliveries"] == 1
    assert row["payload"] == b"\xff\x00 garbage"
    assert row["error"].startswith("undecodable")
    assert (await redis.xpending(stream, "loyalty"))["pending"] == 0


async def test_messages_of_a_dead_consumer_are_reclaimed(
    bus_pool, redis, producer, make_event, recording_handler
):
    events = [make_event("rachel") for _ in range(4)]
    stream = f"events.{producer}.0"
    consumer = _consumer(redis, bus_pool, producer, recording_handler, shards=1, claim_idle_ms=0)
    await consumer.ensure_groups()
    await publish(redis, events, producer, 1)
    # another process read them and died before acking
    taken = await redis.xreadgroup("loyalty", "dead-process", {stream: ">"}, count=10)
    assert len(taken[0][1]) == 4
    await _until_idle(consumer)
    assert await _effects(bus_pool) == [e.id for e in events]
    assert (await redis.xpending(stream, "loyalty"))["pending"] == 0


async def test_lag_counts_undelivered_and_pending_entries(bus_pool, redis, producer, make_event):
    async def failing(ev, conn):
        raise RuntimeError("not yet")

    consumer = _consumer(redis, bus_pool, producer, failing, shards=1, count=2, claim_idle_ms=60_000)
    await consumer.ensure_groups()
    await publish(redis, [make_event("x") for _ in range(5)], producer, 1)
    assert await consumer.lag() == {f"events.{producer}.0": 5}
    await consumer.run_once()  # reads 2, both fail and stay pending
    assert await consumer.lag() == {f"events.{producer}.0": 5}
    assert (await redis.xpending(f"events.{producer}.0", "loyalty"))["pending"] == 2


async def test_consumer_span_continues_the_trace_carried_in_the_event(
    bus_pool, redis, producer, make_event, recording_handler
):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_id = uuid.uuid4().hex
    event = make_event("ross", type="order.completed")
    event.trace.traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
    seen: list[str] = []

    async def handler(ev, conn):
        seen.append(format(trace.get_current_span().get_span_context().trace_id, "032x"))
        await recording_handler(ev, conn)

    await publish(redis, [event], producer, 1)
    await _until_idle(
        _consumer(redis, bus_pool, producer, handler, shards=1, tracer=provider.get_tracer("test"))
    )
    (span,) = exporter.get_finished_spans()
    assert span.kind == trace.SpanKind.CONSUMER
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and span.parent.span_id == 0x00F067AA0BA902B7
    assert span.attributes["mcloud.event.id"] == event.id
    assert seen == [trace_id]


async def test_run_loop_consumes_until_stopped(
    bus_pool, redis, producer, make_event, recording_handler, wait_until
):
    consumer = _consumer(redis, bus_pool, producer, recording_handler, block_ms=50)
    consumer.start()
    try:
        events = [make_event("monica") for _ in range(10)]
        await publish(redis, events, producer, 2)
        await wait_until(lambda: len(recording_handler.calls) == 10)
    finally:
        await consumer.stop()
    assert consumer._task is None


async def test_consumer_recreates_its_group_when_redis_lost_the_stream(
    bus_pool, redis, producer, make_event, recording_handler
):
    consumer = _consumer(redis, bus_pool, producer, recording_handler, shards=1)
    await publish(redis, [make_event("a")], producer, 1)
    await _until_idle(consumer)
    await redis.delete(f"events.{producer}.0")  # e.g. a restart without persistence
    late = make_event("a")
    await publish(redis, [late], producer, 1)
    await _until_idle(consumer)
    assert (await _effects(bus_pool))[-1] == late.id


def test_consumer_needs_streams_and_sane_limits():
    async def handler(ev, conn):
        pass

    deps = {"redis": object(), "pool": object(), "group": "g", "handler": handler}
    with pytest.raises(ValueError):
        StreamConsumer(**deps, producers=[], shards=2)
    with pytest.raises(ValueError):
        StreamConsumer(**deps, producers=["p"], shards=2, max_deliveries=0)
    only = StreamConsumer(**deps, producers=["identity", "loyalty"], shards=8, only_shards=[1, 5])
    assert only.streams == ["events.identity.1", "events.identity.5", "events.loyalty.1", "events.loyalty.5"]
