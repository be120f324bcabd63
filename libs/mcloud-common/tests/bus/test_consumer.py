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
from mcloud_common.bus.streams import shard_of, stream_for


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


def _profiles_on_two_shards() -> tuple[str, str]:
    """Two profile ids that land on different streams of a 2-shard producer."""
    by_shard: dict[int, str] = {}
    for i in range(100):
        by_shard.setdefault(shard_of(f"person{i}", 2), f"person{i}")
    return by_shard[0], by_shard[1]


@pytest.mark.parametrize("claim_idle_ms", [0, 30_000])
async def test_a_failed_entry_is_retried_before_the_entries_behind_it(
    bus_pool, redis, producer, make_event, recording_handler, claim_idle_ms
):
    me, other = _profiles_on_two_shards()
    e1, e2 = make_event(me, type="profile.merged"), make_event(me)
    elsewhere = make_event(other)
    tried: list[str] = []

    async def handler(ev, conn):
        tried.append(ev.id)
        await recording_handler(ev, conn)
        if ev.id == e1.id and tried.count(e1.id) == 1:
            raise RuntimeError("downstream hiccup")

    await publish(redis, [e1, e2, elsewhere], producer, 2)
    consumer = _consumer(redis, bus_pool, producer, handler, claim_idle_ms=claim_idle_ms)
    await consumer.run_once()
    # e2 waits behind e1 on its stream; the other shard is not held up
    assert await _effects(bus_pool) == [elsewhere.id]
    assert tried.count(e2.id) == 0
    await _until_idle(consumer)
    applied = await _effects(bus_pool)
    assert [i for i in applied if i in {e1.id, e2.id}] == [e1.id, e2.id]
    assert [i for i in tried if i != elsewhere.id] == [e1.id, e1.id, e2.id]
    assert sum((await consumer.lag()).values()) == 0


async def test_infrastructure_error_keeps_the_stream_in_order(
    bus_pool, redis, producer, make_event, recording_handler
):
    me, other = _profiles_on_two_shards()
    e1, e2, elsewhere = make_event(me), make_event(me), make_event(other)
    failed = False

    async def handler(ev, conn):
        nonlocal failed
        if ev.id == e1.id and not failed:
            failed = True
            raise ConnectionResetError("database went away")
        await recording_handler(ev, conn)

    await publish(redis, [e1, e2, elsewhere], producer, 2)
    consumer = _consumer(redis, bus_pool, producer, handler)
    with pytest.raises(ConnectionResetError):
        await consumer.run_once()
    assert await _effects(bus_pool) == [elsewhere.id]
    await _until_idle(consumer)
    assert await _effects(bus_pool) == [elsewhere.id, e1.id, e2.id]


async def test_poison_message_is_dead_lettered_after_max_deliveries_then_its_stream_flows_in_order(
    bus_pool, redis, producer, make_event, recording_handler
):
    me, other = _profiles_on_two_shards()
    poison, good1, good2 = (make_event(me) for _ in range(3))
    elsewhere = make_event(other)
    stream = stream_for(poison, producer, 2)
    attempts = 0

    async def handler(ev, conn):
        nonlocal attempts
        if ev.id == poison.id:
            attempts += 1
            raise ValueError("cannot apply this one")
        await recording_handler(ev, conn)

    await publish(redis, [poison, good1, elsewhere], producer, 2)
    consumer = _consumer(redis, bus_pool, producer, handler, claim_idle_ms=0, max_deliveries=3)
    await consumer.run_once()
    assert await _effects(bus_pool) == [elsewhere.id]  # good1 waits behind the poison; the other shard flows
    await publish(redis, [good2], producer, 2)
    await _until_idle(consumer)
    assert attempts == 3
    assert await _effects(bus_pool) == [elsewhere.id, good1.id, good2.id]
    assert recording_handler.calls.count(good1.id) == 1
    row = await bus_pool.fetchrow("SELECT * FROM dead_letters")
    assert row["consumer"] == "loyalty"
    assert row["stream"] == stream
    assert str(row["event_id"]) == poison.id
    assert row["deliveries"] == 3
    assert "ValueError: cannot apply this one" in row["error"]
    assert event_pb2.Event.FromString(row["payload"]) == poison
    dlq = await redis.xrange(dlq_stream("loyalty"), count=1000)
    mine = [fields for _, fields in dlq if fields[b"stream"] == stream.encode()]
    assert len(mine) == 1 and decode(mine[0]) == poison
    assert mine[0][b"message_id"].decode() == row["message_id"]
    assert (await redis.xpending(stream, "loyalty"))["pending"] == 0
    assert consumer.dead_lettered_total == 1
    # never marked processed: a fixed handler can replay it from the dead letters
    assert await bus_pool.fetchval("SELECT count(*) FROM processed_events") == 3


async def test_entries_waiting_behind_a_failure_keep_all_their_deliveries(
    bus_pool, redis, producer, make_event, recording_handler
):
    poison, flaky = make_event("ross"), make_event("ross")
    tried: list[str] = []

    async def handler(ev, conn):
        tried.append(ev.id)
        if ev.id == poison.id or tried.count(flaky.id) == 1:
            raise ValueError("not now")
        await recording_handler(ev, conn)

    await publish(redis, [poison, flaky], producer, 1)
    consumer = _consumer(redis, bus_pool, producer, handler, shards=1, max_deliveries=2)
    await _until_idle(consumer)
    # flaky sat behind the poison for two cycles; it still gets its own second attempt
    assert tried == [poison.id, poison.id, flaky.id, flaky.id]
    assert await _effects(bus_pool) == [flaky.id]
    assert [str(r["event_id"]) for r in await bus_pool.fetch("SELECT event_id FROM dead_letters")] == [poison.id]


async def test_own_pending_entries_left_by_a_previous_process_go_first(
    bus_pool, redis, producer, make_event, recording_handler
):
    old, new = make_event("joey"), make_event("joey")
    stream = f"events.{producer}.0"
    consumer = _consumer(redis, bus_pool, producer, recording_handler, shards=1, consumer="worker-1")
    await consumer.ensure_groups()
    await publish(redis, [old], producer, 1)
    # a previous process with the same consumer name read `old` and died before acking
    await redis.xreadgroup("loyalty", "worker-1", {stream: ">"}, count=10)
    await publish(redis, [new], producer, 1)
    await _until_idle(consumer)
    assert await _effects(bus_pool) == [old.id, new.id]


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


async def test_batch_handler_applies_a_streams_entries_in_one_transaction_exactly_once(
    bus_pool, redis, producer, make_event, recording_handler
):
    batches: list[list[str]] = []

    async def batch(events, conn) -> None:
        batches.append([e.id for e in events])
        for event in events:
            await recording_handler(event, conn)

    events = [make_event("chandler") for _ in range(6)]
    await publish(redis, events, producer, 2)
    await publish(redis, events[:2], producer, 2)  # re-sent: applied once all the same
    consumer = _consumer(redis, bus_pool, producer, recording_handler, batch_handler=batch, count=100)
    await _until_idle(consumer)
    assert await _effects(bus_pool) == [e.id for e in events]  # in publish order
    assert batches == [[e.id for e in events]] and consumer.batches_total == 1
    assert consumer.duplicates_total == 2 and sum((await consumer.lag()).values()) == 0


async def test_a_failing_batch_falls_back_to_one_by_one_and_keeps_its_retry_semantics(
    bus_pool, redis, producer, make_event, recording_handler
):
    async def batch(events, conn) -> None:
        for event in events:
            await recording_handler(event, conn)
        raise RuntimeError("one of them is bad")

    good = [make_event("phoebe") for _ in range(3)]
    await publish(redis, good, producer, 2)
    recording_handler.calls.clear()
    consumer = _consumer(redis, bus_pool, producer, recording_handler, batch_handler=batch, count=100)
    await _until_idle(consumer)
    # the batch's writes were rolled back; the one-by-one path applied each event once
    assert await _effects(bus_pool) == [e.id for e in good]
    assert consumer.batches_total == 0 and consumer.handled_total == 3
