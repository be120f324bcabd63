"""Batch ingest through the gateway: events/s and batch latency percentiles, next to this machine's
raw ceiling (asyncpg COPY of the same rows into identity's events table) as a ratio.

    python -m bench.ingest [--batches 400] [--batch-size 100] [--concurrency 8] [--people 5000]
                           [--track-rate 500] [--track-seconds 20]

Starts a stack the way `mcloud up` does (free ports, throwaway home), creates a tenant, sends
Segment /v1/batch requests (90% track, 10% identify), then waits until the outbox is drained so the
figure includes publishing to the stream. Then single `POST /v1/track` calls at a fixed open-loop
rate (bench.loadgen, latency from each request's scheduled start): p50/p99 (`--track-rate 0` skips).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import orjson

from bench.common import create_tenant, percentile, write_section
from bench.loadgen import open_loop
from mcloud_cli.stack import start_stack
from mcloud_common.db import asyncpg_dsn, ensure_database, with_database
from mcloud_common.migrations import upgrade_async


def make_batch(rng: random.Random, size: int, people: int) -> list[dict]:
    now = datetime.now(UTC).isoformat()
    batch = []
    for _ in range(size):
        person = rng.randrange(people)
        common = {"messageId": str(uuid.uuid4()), "anonymousId": f"anon-{person}", "timestamp": now,
                  "context": {"library": {"name": "analytics.js"}, "page": {"path": "/p"}}}
        if rng.random() < 0.1:
            batch.append({**common, "type": "identify", "userId": f"user-{person}",
                          "traits": {"email": f"p{person}@example.com", "plan": "gold"}})
        else:
            batch.append({**common, "type": "track", "event": "Product Viewed",
                          "properties": {"product_id": f"sku-{rng.randrange(500)}", "price": 129.0,
                                         "category": "running"}})
    return batch


async def run_load(url: str, write_key: str, *, batches: int, size: int, concurrency: int,
                   people: int, make: Callable[[random.Random, int, int], list[dict]] = make_batch) -> dict:
    """POST `batches` Segment batches made by `make(rng, size, people)` from `concurrency` clients."""
    rng = random.Random(7)
    bodies = [orjson.dumps({"batch": make(rng, size, people)}) for _ in range(batches)]
    latencies: list[float] = []
    accepted = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, auth=(write_key, ""), limits=limits, timeout=30) as client:
        # warm-up: connections, caches, JIT-free but pools and plans
        for b in [orjson.dumps({"batch": make(rng, size, people)}) for _ in range(10)]:
            (await client.post("/v1/batch", content=b, headers={"content-type": "application/json"})
             ).raise_for_status()

        async def worker() -> None:
            nonlocal accepted
            while not queue.empty():
                body = queue.get_nowait()
                t0 = time.perf_counter()
                r = await client.post("/v1/batch", content=body, headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()
                accepted += r.json().get("accepted", size)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"events": accepted, "seconds": elapsed, "events_per_s": accepted / elapsed,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000}


async def track_load(url: str, write_key: str, *, rate: float, seconds: float, people: int) -> dict:
    """Single Segment track calls (`POST /v1/track`, a fresh messageId each) at `rate` per second."""
    rng = random.Random(11)
    now = datetime.now(UTC).isoformat()
    n = max(1, int(rate * seconds))
    bodies = [orjson.dumps({"messageId": str(uuid.uuid4()), "anonymousId": f"anon-{rng.randrange(people)}",
                            "event": "Product Viewed", "timestamp": now,
                            "properties": {"product_id": f"sku-{rng.randrange(500)}", "price": 129.0},
                            "context": {"library": {"name": "analytics.js"}, "page": {"path": "/p"}}})
              for _ in range(n)]
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    result = await open_loop(url, ["/v1/track"] * n, rate=rate, headers={"authorization": f"Basic {auth}"},
                             bodies=bodies)
    result["errors"] = sum(c for status, c in result["statuses"].items() if status != 200)
    return result


async def wait_drained(identity_db: str, limit_s: float = 300) -> float:
    conn = await asyncpg.connect(asyncpg_dsn(identity_db))
    start = time.perf_counter()
    try:
        while await conn.fetchval("SELECT count(*) FROM outbox") > 0:
            if time.perf_counter() - start > limit_s:
                raise TimeoutError("outbox not drained")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    return time.perf_counter() - start


async def copy_ceiling(pg_url: str, rows: int, size: int) -> float:
    """rows/s of asyncpg COPY, in chunks of `size`, into a fresh identity events table."""
    from identity.app import MIGRATIONS

    url = with_database(pg_url, f"bench_copy_{uuid.uuid4().hex[:8]}")
    await ensure_database(url)
    await upgrade_async(MIGRATIONS, url)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    tenant = uuid.uuid4()
    now = datetime.now(UTC)
    props = orjson.dumps({"product_id": "sku-1", "price": 129.0, "category": "running"}).decode()
    ctx = orjson.dumps({"library": {"name": "analytics.js"}, "page": {"path": "/p"}}).decode()
    records = [(uuid.uuid4(), tenant, uuid.uuid4(), str(uuid.uuid4()), "track", "Product Viewed", f"anon-{i}",
                "", props, "{}", ctx, "web", now, now) for i in range(rows)]
    columns = ("id", "tenant_id", "profile_id", "message_id", "type", "name", "anonymous_id", "user_id",
               "properties", "traits", "context", "channel", "timestamp", "received_at")
    await conn.execute("SET synchronous_commit = on")
    try:
        start = time.perf_counter()
        for i in range(0, rows, size):
            async with conn.transaction():
                await conn.copy_records_to_table("events", records=records[i:i + size], columns=columns)
        return rows / (time.perf_counter() - start)
    finally:
        await conn.close()


async def main_async(args: argparse.Namespace) -> dict:
    home = Path(tempfile.mkdtemp(prefix="mcloud-bench-"))
    # one key drives the whole load: lift its per-key rate limit (200/s by default) for the measurement
    unlimited = {"GATEWAY_RATE_LIMIT_PER_SECOND": "1000000", "GATEWAY_RATE_LIMIT_BURST": "1000000"}
    with start_stack(home / "mcloud", env=unlimited) as stack:
        keys = create_tenant(stack.home, f"bench-{uuid.uuid4().hex[:6]}")
        load = await run_load(stack.gateway_url, keys["write_key"], batches=args.batches, size=args.batch_size,
                              concurrency=args.concurrency, people=args.people)
        drain = await wait_drained(stack.database_url("identity"))
        total = load["seconds"] + drain
        track = None
        if args.track_rate > 0:
            track = await track_load(stack.gateway_url, keys["write_key"], rate=args.track_rate,
                                     seconds=args.track_seconds, people=args.people)
            await wait_drained(stack.database_url("identity"))
        ceiling = await copy_ceiling(stack.database_url("identity"), load["events"], args.batch_size)
    published_rate = load["events"] / total
    return {**load, "drain_seconds": drain, "published_events_per_s": published_rate,
            "copy_rows_per_s": ceiling, "ratio_to_copy": load["events_per_s"] / ceiling,
            "batch_size": args.batch_size, "concurrency": args.concurrency, "people": args.people, "track": track}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--track-rate", type=float, default=500, help="single /v1/track calls per second (0: skip)")
    parser.add_argument("--track-seconds", type=float, default=20)
    args = parser.parse_args()
    r = asyncio.run(main_async(args))
    t = r["track"]
    track_row = "" if t is None else (
        f"| single track `POST /v1/track` at {t['rate']:.0f} req/s open loop ({t['requests']:,} calls) | "
        f"p50 {t['p50_ms']:.1f} ms, **p99 {t['p99_ms']:.1f} ms**, max {t['max_ms']:.0f} ms, achieved "
        f"{t['achieved_rps']:.0f} req/s, {t['errors']} errors |\n")
    table = f"""
Batch ingest through the gateway (`POST /v1/batch`, {r['batch_size']} events per batch, {r['concurrency']}
concurrent clients, {r['people']} people, 10% identify) with identity resolution, message-id dedupe,
event storage and outbox, all on this one machine (load generator included).

| measure | value |
|---|---|
| events accepted | {r['events']:,} in {r['seconds']:.2f} s |
| ingest rate (accepted by the API) | **{r['events_per_s']:,.0f} events/s** |
| batch latency p50 / p99 | {r['p50_ms']:.1f} ms / {r['p99_ms']:.1f} ms |
| outbox drained after the load | {r['drain_seconds']:.2f} s later |
| end-to-end rate (stored and on the stream) | {r['published_events_per_s']:,.0f} events/s |
| raw ceiling: asyncpg COPY of the same rows, {r['batch_size']} per transaction | {r['copy_rows_per_s']:,.0f} rows/s |
| **ratio ingest / COPY ceiling** | **{r['ratio_to_copy']:.2f}** |
{track_row}
Command: `python -m bench.ingest --batches {r['events'] // r['batch_size']} --batch-size {r['batch_size']} \
--concurrency {r['concurrency']} --track-rate {args.track_rate:g} --track-seconds {args.track_seconds:g}`
"""
    print(table)
    write_section("ingest", table, r)


if __name__ == "__main__":
    main()
