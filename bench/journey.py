"""journey-svc executor figures: a segment of N people enters a journey (send an email -> wait 1 day ->
split on "opened?") and the durable worker runs it, with the sends going to a real messaging service.

    python -m bench.journey [--people 1000000] [--workers 2] [--opened 0.1]

Set-up: embedded PostgreSQL and Valkey; messaging-svc runs as its own process (`python -m messaging
serve`, email channel on the `log` provider so its senders do their whole pipeline without an SMTP
server); the journey worker runs in this process on a clock that moves with wall time. The entry
itself is a COPY of N enrollments due now (what a segment entry's fan-out leaves behind).

1. First step for everyone: claim -> send (journeys batch their sends into SendMessages calls; each
   message is queued with its idempotency key and message.queued event) -> 1-day timer armed.
   Seconds, enrollments/s, steps/s.
2. Opens: message.opened events for a share of the people go through the bus into journey's events
   consumer (the path a real open takes), timed.
3. A day later: the timers fall due at the pace they were armed (the clock jumps a day and runs on),
   the worker takes each as it falls due: timer lag (handled - due) p50/p99, and the split's
   opened/not-opened counts checked against the opens sent.
4. The same day-later step with every timer due at once (the worst case: a schedule that arms a
   million timers for one instant): drain time and its lag p50/p99.
5. Raw ceiling: asyncpg COPY of the same rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import redis.asyncio as aioredis

from bench.common import percentile, write_section
from journey.app import MIGRATIONS
from journey.background.events import make_consumer
from journey.background.worker import Effects, Worker
from mcloud.events.v1 import event_pb2, messaging_events_pb2
from mcloud.messaging.v1 import messaging_pb2 as mpb
from mcloud.messaging.v1 import messaging_pb2_grpc
from mcloud_common.bus import publish, streams_of
from mcloud_common.db import asyncpg_dsn, create_pool, ensure_database, with_database
from mcloud_common.embedded import EmbeddedPostgres, EmbeddedValkey, free_port, port_open
from mcloud_common.grpc_client import make_channel, tenant_metadata
from mcloud_common.ids import new_id, new_id_str
from mcloud_common.migrations import upgrade_async


class WallClock:
    """`base` at `start`, then moving with wall time (so timers armed over a minute fall due over a minute)."""

    def __init__(self, base: datetime) -> None:
        self.rebase(base)

    def rebase(self, base: datetime) -> None:
        self.base, self.start = base, time.perf_counter()

    def now(self) -> datetime:
        return self.base + timedelta(seconds=time.perf_counter() - self.start)


def definition(template_id: str) -> dict:
    return {"entry": {"type": "api"}, "start": "send",
            "steps": [{"id": "send", "type": "send", "channel": "email", "template": template_id, "next": "wait-1d"},
                      {"id": "wait-1d", "type": "wait", "duration": "P1D", "next": "opened"},
                      {"id": "opened", "type": "condition", "branches": [{"when": {"opened": "send"}, "next": "yes"}],
                       "else": "no"},
                      {"id": "yes", "type": "exit"}, {"id": "no", "type": "exit"}]}


async def drain(workers: list[Worker]) -> None:
    while sum(await asyncio.gather(*(w.run_once() for w in workers))):
        pass


def start_messaging(db_url: str, redis_url: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "MESSAGING_DATABASE_URL": db_url, "MESSAGING_REDIS_URL": redis_url,
           "MESSAGING_GRPC_PORT": str(port), "MESSAGING_IDENTITY_TARGET": "127.0.0.1:1",
           "MESSAGING_LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "-m", "messaging", "migrate"], env=env, check=True, capture_output=True)
    process = subprocess.Popen([sys.executable, "-m", "messaging", "serve"], env=env)
    deadline = time.monotonic() + 60
    while not port_open(port):
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("messaging-svc did not start")
        time.sleep(0.2)
    return process, port


async def main_async(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="mcloud-bench-journey-"))
    pg = EmbeddedPostgres(root / "pg", free_port())
    pg.start(fast=True)
    valkey = EmbeddedValkey(root / "valkey", free_port())
    valkey.start(persist=False)
    messaging = None
    try:
        url = with_database(pg.url(), "journey_bench")
        await ensure_database(url)
        await upgrade_async(MIGRATIONS, url)
        messaging, mport = start_messaging(with_database(pg.url(), "messaging_bench"), valkey.url)
        tenant, jid, t0 = uuid.uuid4(), new_id(), datetime(2026, 11, 1, 9, tzinfo=UTC)
        md = tenant_metadata(str(tenant))
        channel = make_channel(f"127.0.0.1:{mport}", default_timeout=60)
        mstub = messaging_pb2_grpc.MessagingServiceStub(channel)
        await mstub.ConfigureChannel(mpb.ConfigureChannelRequest(config=mpb.ChannelConfig(
            channel=mpb.CHANNEL_EMAIL, provider="log", enabled=True)), metadata=md)
        template = (await mstub.UpsertTemplate(mpb.UpsertTemplateRequest(template=mpb.Template(
            name="Double-11", channel=mpb.CHANNEL_EMAIL, default_locale="en",
            variants=[mpb.TemplateVariant(locale="en", subject="Hi {{ profile.first_name | default: 'runner' }}",
                                          body_html="<p>Early access starts now.</p>")])), metadata=md)).template
        spec = orjson.dumps(definition(template.id)).decode()
        pool = await create_pool(url, max_size=10)
        await pool.execute("INSERT INTO journeys (tenant_id, id, name, status, draft, published_version, created_at, "
                           "updated_at) VALUES ($1, $2, 'bench', 'active', $3, 1, $4, $4)", tenant, jid, spec, t0)
        await pool.execute("INSERT INTO journey_versions (tenant_id, journey_id, version, definition, entry_type, "
                           "published_at) VALUES ($1, $2, 1, $3, 'api', $4)", tenant, jid, spec, t0)
        people = [uuid.uuid4() for _ in range(args.people)]
        rows = [(tenant, new_id(), jid, 1, p, "send", t0, t0, t0) for p in people]
        start = time.perf_counter()
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                "enrollments", records=rows,
                columns=["tenant_id", "id", "journey_id", "version", "profile_id", "step_id", "due_at", "entered_at",
                         "updated_at"])
        copy_s = time.perf_counter() - start
        # what identity's events would have told messaging about these people (their contacts)
        mconn = await asyncpg.connect(asyncpg_dsn(with_database(pg.url(), "messaging_bench")))
        try:
            await mconn.copy_records_to_table(
                "contacts", columns=["tenant_id", "profile_id", "email", "synced_at"],
                records=[(tenant, p, f"{p.hex[:12]}@example.com", t0) for p in people])
        finally:
            await mconn.close()

        # 1. the first step for everyone: send, arm the 1-day timer
        clock = WallClock(t0)
        effects = Effects("127.0.0.1:1", "127.0.0.1:1", f"127.0.0.1:{mport}")
        workers = [Worker(pool, clock, effects, batch=args.batch, lease_seconds=600) for _ in range(args.workers)]
        start = time.perf_counter()
        await drain(workers)
        first_s = time.perf_counter() - start
        first_steps = sum(w.steps_total for w in workers)
        armed = await pool.fetchval("SELECT count(*) FROM enrollments WHERE step_id = 'wait-1d'")

        # 2. opens: message.opened for a share of the people, through the bus into journey's consumer
        redis = aioredis.from_url(valkey.url)
        group = "journey-bench"
        for stream in streams_of("messaging", 4):
            await redis.xgroup_create(stream, group, id="$", mkstream=True)
        consumer, reactions = make_consumer(pool, redis, clock, 4, group=group)
        consumer.block_ms = 0
        await reactions.journeys.refresh(pool, force=True)
        opened_ids = await pool.fetch("SELECT id, profile_id FROM enrollments ORDER BY id LIMIT $1",
                                      int(args.people * args.opened))
        start = time.perf_counter()
        for i in range(0, len(opened_ids), 5000):
            events = []
            for r in opened_ids[i:i + 5000]:
                ev = event_pb2.Event(id=new_id_str(), tenant_id=str(tenant), type="message.opened",
                                     profile_id=str(r["profile_id"]), source="messaging")
                ev.payload.Pack(messaging_events_pb2.MessageOpened(message=messaging_events_pb2.MessageRef(
                    message_id=new_id_str(), profile_id=str(r["profile_id"]), channel="email",
                    journey_id=str(jid), journey_version=1, enrollment_id=str(r["id"]), step_id="send")))
                events.append(ev)
            await publish(redis, events, "messaging", 4)
            while await consumer.run_once():
                pass
        opens_s = time.perf_counter() - start

        # 3. a day later, the timers fall due at the pace they were armed
        lags: list[float] = []

        def timed(w: Worker) -> None:
            original = w._save

            async def save(done, now, _orig=original):
                await _orig(done, now)
                handled = clock.now()
                lags.extend((handled - d.row["waiting_until"]).total_seconds() for d in done
                            if d.row["waiting_until"] is not None)

            w._save = save

        for w in workers:
            timed(w)
        clock.rebase(t0 + timedelta(days=1))
        start = time.perf_counter()
        while True:
            if sum(await asyncio.gather(*(w.run_once() for w in workers))):
                continue
            if time.perf_counter() - start > first_s and not await pool.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM enrollments WHERE status = 'active')"):
                break
            await asyncio.sleep(0.2)  # the worker's idle poll interval
        paced_s = time.perf_counter() - start
        split = dict(await pool.fetch("SELECT outcome, count(*) FROM step_log WHERE step_id = 'opened' GROUP BY 1"))
        paced_lags, lags = lags, []

        # 4. the worst case: the same step with every timer due at once
        await pool.execute("UPDATE enrollments SET status = 'active', step_id = 'wait-1d', ended_at = NULL, "
                           "due_at = $1, waiting_until = $1, exit_reason = '' WHERE tenant_id = $2", t0, tenant)
        clock.rebase(t0)
        start = time.perf_counter()
        await drain(workers)
        burst_s = time.perf_counter() - start
        burst_lags = lags
        steps = sum(w.steps_total for w in workers)
        await effects.close()
        await channel.close()
        await redis.aclose()
        await pool.close()
    finally:
        if messaging is not None:
            messaging.terminate()
            messaging.wait(30)
        valkey.destroy()
        pg.stop()
        pg.destroy()
    return {"people": args.people, "workers": args.workers, "copy_rows_per_s": args.people / copy_s,
            "first_step_s": first_s, "first_per_s": args.people / first_s, "first_steps": first_steps,
            "armed": armed, "opens": len(opened_ids), "opens_s": opens_s, "opens_per_s": len(opened_ids) / opens_s,
            "paced_s": paced_s, "paced_lag_p50_s": percentile(paced_lags, 50),
            "paced_lag_p99_s": percentile(paced_lags, 99), "split": split, "burst_s": burst_s,
            "burst_per_s": args.people / burst_s, "burst_lag_p50_s": percentile(burst_lags, 50),
            "burst_lag_p99_s": percentile(burst_lags, 99), "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--opened", type=float, default=0.1, help="share of people whose email is opened")
    r = asyncio.run(main_async(parser.parse_args()))
    table = f"""
journey-svc's durable executor, {r['people']:,} people, {r['workers']} workers in one process, the sends going to
a real messaging-svc (its own process; log provider); embedded PostgreSQL and Valkey on this machine.
Journey: send an email -> wait 1 day -> split on "opened?".

| measure | value |
|---|---|
| first step for everyone (claim, SendMessages, 1-day timer armed) | {r['first_step_s']:.1f} s, \
**{r['first_per_s']:,.0f} enrollments/s** ({r['armed']:,} timers armed) |
| opens through the bus into the journey ({r['opens']:,} message.opened) | {r['opens_s']:.1f} s, \
{r['opens_per_s']:,.0f} events/s |
| a day later, timers falling due at the pace they were armed: timer lag p50 / p99 | \
**{r['paced_lag_p50_s']:.2f} s / {r['paced_lag_p99_s']:.2f} s** |
| split on opened: people per branch | {", ".join(f"{k} {v:,}" for k, v in sorted(r['split'].items()))} |
| worst case, every timer due at the same instant: drain | {r['burst_s']:.1f} s, \
{r['burst_per_s']:,.0f} enrollments/s, lag p50 / p99 {r['burst_lag_p50_s']:.1f} s / {r['burst_lag_p99_s']:.1f} s |
| raw ceiling: asyncpg COPY of the same rows | {r['copy_rows_per_s']:,.0f} rows/s |
"""
    write_section("journey", table, r)
    print(table)


if __name__ == "__main__":
    main()
