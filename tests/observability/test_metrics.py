"""The sampled gauges read what they claim, as a scrape of this process shows them: consumer lag,
outbox backlog, journey timer lag (and the lag at claim), messaging send-queue depth."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from google.protobuf import empty_pb2
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from journey.app import MIGRATIONS as JOURNEY_MIGRATIONS
from journey.background.gauges import sample_timer_lag
from journey.background.worker import Effects, Worker
from mcloud_common.bus import BUS_DDL, StreamConsumer, enqueue, publish
from mcloud_common.bus.consumer import running_consumers
from mcloud_common.bus.envelope import envelope
from mcloud_common.bus.gauges import sample_consumer_lag, sample_outbox
from mcloud_common.clock import ManualClock
from mcloud_common.db import create_pool
from messaging.app import MIGRATIONS as MESSAGING_MIGRATIONS
from messaging.background.gauges import sample_send_queue

T0 = datetime(2026, 11, 11, 20, 0, tzinfo=UTC)


def scrape(name: str, **labels: str) -> float | None:
    """The value of one sample in this process's Prometheus exposition (what /metrics serves)."""
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def _event(tenant: str) -> object:
    return envelope("observability", tenant, "thing.happened", str(uuid.uuid4()), empty_pb2.Empty())


async def _bus_pool(make_database) -> asyncpg.Pool:
    url = await make_database("obs")
    pool = await create_pool(url)
    for ddl in BUS_DDL:
        await pool.execute(ddl)
    return pool


async def test_consumer_lag_counts_entries_not_delivered_and_delivered_but_not_acked(make_database, redis):
    pool = await _bus_pool(make_database)
    producer, group = f"obs{uuid.uuid4().hex[:8]}", f"obs-{uuid.uuid4().hex[:8]}"
    seen = []

    async def handler(event, conn):
        seen.append(event.id)

    consumer = StreamConsumer(redis=redis, pool=pool, group=group, producers=[producer], shards=1,
                              handler=handler, block_ms=0, count=2)
    try:
        await consumer.ensure_groups()
        await publish(redis, [_event(str(uuid.uuid4())) for _ in range(5)], producer, 1)
        stream = f"events.{producer}.0"
        await sample_consumer_lag([consumer])
        assert scrape("mcloud_bus_consumer_lag", group=group, stream=stream) == 5
        assert await consumer.run_once() == 2  # two read and acked
        await sample_consumer_lag([consumer])
        assert scrape("mcloud_bus_consumer_lag", group=group, stream=stream) == 3
        # a started consumer is sampled without being named; a stopped one no longer is
        consumer.start()
        assert consumer in running_consumers()
        await consumer.stop()
        assert consumer not in running_consumers()
    finally:
        await pool.close()


async def test_outbox_backlog_counts_rows_not_relayed_yet(make_database):
    pool = await _bus_pool(make_database)
    try:
        await sample_outbox(pool)
        assert scrape("mcloud_outbox_backlog") == 0
        assert scrape("mcloud_outbox_oldest_seconds") == 0
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, [_event(str(uuid.uuid4())) for _ in range(3)], producer="obs", shards=2)
        await sample_outbox(pool)
        assert scrape("mcloud_outbox_backlog") == 3
        assert scrape("mcloud_outbox_oldest_seconds") >= 0
    finally:
        await pool.close()


async def _enrollment(conn: asyncpg.Connection, due_at: datetime | None, status: str = "active") -> None:
    await conn.execute(
        "INSERT INTO enrollments (tenant_id, id, journey_id, version, profile_id, status, due_at, entered_at, "
        "updated_at) VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $7)",
        uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), status, due_at, T0 - timedelta(hours=1))


async def test_journey_timer_lag_is_the_oldest_overdue_timer_and_claims_record_how_late_they_were(make_database):
    pool = await create_pool(await make_database("journey", migrations=JOURNEY_MIGRATIONS))
    clock = ManualClock(T0)
    try:
        await sample_timer_lag(pool, clock)
        assert scrape("mcloud_journey_timer_lag_seconds") == 0
        async with pool.acquire() as conn:
            await _enrollment(conn, T0 - timedelta(seconds=30))
            await _enrollment(conn, T0 - timedelta(seconds=10))
            await _enrollment(conn, T0 + timedelta(minutes=5))  # not due yet
            await _enrollment(conn, T0 - timedelta(hours=1), status="completed")  # done with
        await sample_timer_lag(pool, clock)
        assert scrape("mcloud_journey_timer_lag_seconds") == 30
        assert scrape("mcloud_journey_timers_due") == 2

        before = scrape("mcloud_journey_timer_claim_lag_seconds_count") or 0
        below_15 = scrape("mcloud_journey_timer_claim_lag_seconds_bucket", le="30.0") or 0
        effects = Effects("127.0.0.1:9", "127.0.0.1:9", "127.0.0.1:9")  # never called: the journeys are gone
        try:
            assert await Worker(pool, clock, effects).run_once() == 2
        finally:
            await effects.close()
        assert scrape("mcloud_journey_timer_claim_lag_seconds_count") == before + 2
        assert scrape("mcloud_journey_timer_claim_lag_seconds_bucket", le="30.0") == below_15 + 2
        await sample_timer_lag(pool, clock)
        assert scrape("mcloud_journey_timer_lag_seconds") == 0  # claimed and run: nothing overdue
    finally:
        await pool.close()


async def _message(conn: asyncpg.Connection, due_at: datetime, status: str = "queued") -> None:
    await conn.execute(
        "INSERT INTO messages (tenant_id, id, profile_id, requested_channel, template_id, status, idempotency_key, "
        "due_at, queued_at) VALUES ($1, $2, $3, 'email', $4, $5, $6, $7, $8)",
        uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), status, uuid.uuid4().hex, due_at,
        T0 - timedelta(hours=1))


async def test_send_queue_depth_counts_queued_messages_due_now_and_later(make_database):
    pool = await create_pool(await make_database("messaging", migrations=MESSAGING_MIGRATIONS))
    clock = ManualClock(T0)
    try:
        async with pool.acquire() as conn:
            await _message(conn, T0 - timedelta(seconds=45))
            await _message(conn, T0 - timedelta(seconds=5))
            await _message(conn, T0 + timedelta(hours=8))  # quiet hours: held for the morning
            await _message(conn, T0 - timedelta(hours=1), status="sent")
        await sample_send_queue(pool, clock)
        assert scrape("mcloud_messaging_send_queue_depth", when="due") == 2
        assert scrape("mcloud_messaging_send_queue_depth", when="later") == 1
        assert scrape("mcloud_messaging_send_queue_oldest_due_seconds") == 45
    finally:
        await pool.close()
