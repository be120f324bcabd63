"""identity-svc figures: batch ingest with identity resolution, profile lookup latency at a fixed
request rate, and segment re-evaluation rate, each next to a raw ceiling of this machine.

    python -m bench.identity [--batches 200] [--batch-size 500] [--rate 500] [--seconds 20]

1. Ingest: Segment `/v1/batch` through the gateway (tracks, identifies with emails, aliases over
   a population of people and devices), identity resolution on; raw ceiling: asyncpg COPY of the
   same number of rows.
2. Lookup: `GET /v1/profiles/user_id:...` through the gateway at a fixed open-loop rate; latency is
   measured from each request's scheduled start (no coordinated omission).
3. Segments: a full re-evaluation of several rule-based segments over every profile of the tenant
   (profiles x segments per second), the time-based pass's work.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from bench.common import create_tenant, write_section
from bench.ingest import copy_ceiling, run_load, wait_drained
from bench.loadgen import open_loop
from mcloud_cli.stack import start_stack
from mcloud_common.db import asyncpg_dsn
from mcloud_common.testing.services import wait_until

SEGMENTS = {
    "viewed running 3+ times in 7 days": {"event": "Product Viewed", "where": [
        {"property": "category", "op": "eq", "value": "running"}], "within_days": 7,
        "count": {"op": "gte", "value": 3}},
    "gold plan": {"trait": "plan", "op": "eq", "value": "gold"},
    "has email trait": {"trait": "email", "op": "exists"},
    "viewed but did not order": {"all": [
        {"event": "Product Viewed", "within_days": 7, "count": {"op": "gte", "value": 1}},
        {"not": {"event": "Order Completed", "within_days": 7, "count": {"op": "gte", "value": 1}}}]},
    "same product 3+ times": {"event": "Product Viewed", "within_days": 7, "count": {"op": "gte", "value": 3},
                              "same": "product_id"},
}


def make_batch(rng: random.Random, size: int, people: int) -> list[dict]:
    """85% track, 10% identify (user id + email + phone), 5% alias of a second device."""
    now = datetime.now(UTC).isoformat()
    batch = []
    for _ in range(size):
        person = rng.randrange(people)
        device = f"anon-{person}-{rng.randrange(2)}"
        common = {"messageId": str(uuid.uuid4()), "anonymousId": device, "timestamp": now,
                  "context": {"library": {"name": "analytics.js"}, "page": {"path": "/p"}}}
        roll = rng.random()
        if roll < 0.10:
            batch.append({**common, "type": "identify", "userId": f"user-{person}",
                          "traits": {"email": f"P{person}@Example.com ", "phone": f"+86 138{person:08d}",
                                     "plan": "gold" if person % 3 == 0 else "basic"}})
        elif roll < 0.15:
            batch.append({**common, "type": "alias", "userId": f"user-{person}", "previousId": device})
        else:
            batch.append({**common, "type": "track", "event": "Product Viewed",
                          "properties": {"product_id": f"sku-{rng.randrange(300)}", "price": 129.0,
                                         "category": rng.choice(["running", "training", "outdoor"])}})
    return batch


async def lookup_load(url: str, secret: str, *, rate: float, seconds: float, people: int) -> dict:
    """Open loop at `rate` (bench.loadgen): profiles of people who exist and of some who do not."""
    rng = random.Random(5)
    paths = [f"/v1/profiles/user_id:user-{rng.randrange(people)}" for _ in range(int(rate * seconds))]
    result = await open_loop(url, paths, rate=rate, headers={"authorization": f"Bearer {secret}"})
    result["errors"] = sum(n for status, n in result["statuses"].items() if status not in (200, 404))
    return result


async def _all_evaluated(pool: asyncpg.Pool, tenant: str) -> bool:
    return not await pool.fetchval(
        "SELECT count(*) FROM segments WHERE tenant_id = $1 AND evaluated_version < rules_version", uuid.UUID(tenant))


async def segment_pass(client: httpx.AsyncClient, secret: str, identity_db: str, tenant: str) -> dict:
    """Time from saving the segments to every one fully evaluated (first membership written, entered
    events published), then one full steady-state pass (what the time pass does)."""
    from identity.background.segments import reevaluate_all

    headers = {"authorization": f"Bearer {secret}"}
    pool = await asyncpg.create_pool(asyncpg_dsn(identity_db), min_size=1, max_size=2)
    try:
        t0 = time.perf_counter()
        for name, rules in SEGMENTS.items():
            r = await client.post("/v1/segments", json={"name": name, "rules": rules}, headers=headers)
            r.raise_for_status()
        await wait_until(lambda: _all_evaluated(pool, tenant), timeout=600, interval=0.05)
        first = time.perf_counter() - t0
        profiles = await pool.fetchval(
            "SELECT count(*) FROM profiles WHERE tenant_id = $1 AND merged_into IS NULL", uuid.UUID(tenant))
        start = time.perf_counter()
        await reevaluate_all(pool, tenant, datetime.now(UTC))
        elapsed = time.perf_counter() - start
        members = await pool.fetchval("SELECT count(*) FROM segment_members WHERE tenant_id = $1", uuid.UUID(tenant))
    finally:
        await pool.close()
    checks = profiles * len(SEGMENTS)
    return {"profiles": profiles, "segments": len(SEGMENTS), "seconds": elapsed, "members": members,
            "checks_per_s": checks / elapsed, "first_seconds": first, "first_checks_per_s": checks / first}


async def main_async(args: argparse.Namespace) -> dict:
    home = Path(tempfile.mkdtemp(prefix="mcloud-bench-"))
    # one key drives the whole load: lift its per-key rate limit (200/s by default) for the measurement
    unlimited = {"GATEWAY_RATE_LIMIT_PER_SECOND": "1000000", "GATEWAY_RATE_LIMIT_BURST": "1000000"}
    with start_stack(home / "mcloud", env=unlimited) as stack:
        keys = create_tenant(stack.home, f"bench-{uuid.uuid4().hex[:6]}")
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        ingest = await run_load(stack.gateway_url, keys["write_key"], batches=args.batches, size=args.batch_size,
                                concurrency=args.concurrency, people=args.people, make=make_batch)
        drain = await wait_drained(stack.database_url("identity"))
        lookup = await lookup_load(stack.gateway_url, keys["secret_key"], rate=args.rate, seconds=args.seconds,
                                   people=args.people)
        async with httpx.AsyncClient(base_url=stack.gateway_url, limits=limits, timeout=30) as client:
            segments = await segment_pass(client, keys["secret_key"], stack.database_url("identity"),
                                          keys["tenant_id"])
        ceiling = await copy_ceiling(stack.database_url("identity"), ingest["events"], args.batch_size)
    return {"ingest": {**ingest, "drain_seconds": drain, "copy_rows_per_s": ceiling,
                       "ratio_to_copy": ingest["events_per_s"] / ceiling},
            "lookup": lookup, "segments": segments,
            "params": {"batch_size": args.batch_size, "concurrency": args.concurrency, "people": args.people}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--people", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    r = asyncio.run(main_async(args))
    i, lk, s, p = r["ingest"], r["lookup"], r["segments"], r["params"]
    table = f"""
identity-svc through the gateway, stack started as `mcloud up` starts it, load generator on the same
2-core machine.

| measure | value |
|---|---|
| batch ingest with identity resolution ({p['batch_size']} events/batch, {p['concurrency']} clients, \
{p['people']:,} people, 10% identify with email + phone, 5% alias) | **{i['events_per_s']:,.0f} events/s** \
({i['events']:,} events in {i['seconds']:.1f} s) |
| batch latency p50 / p99 | {i['p50_ms']:.0f} ms / {i['p99_ms']:.0f} ms |
| outbox drained after the load | {i['drain_seconds']:.2f} s later |
| raw ceiling: asyncpg COPY of as many rows, {p['batch_size']} per transaction | {i['copy_rows_per_s']:,.0f} rows/s |
| **ratio ingest / COPY** | **{i['ratio_to_copy']:.2f}** |
| profile lookup `GET /v1/profiles/user_id:…` at {lk['rate']:.0f} req/s open loop ({lk['requests']:,} requests) \
| p50 {lk['p50_ms']:.1f} ms, **p99 {lk['p99_ms']:.1f} ms**, max {lk['max_ms']:.0f} ms, achieved \
{lk['achieved_rps']:.0f} req/s, {lk['errors']} errors |
| segments saved and first evaluated ({s['segments']} segments x {s['profiles']:,} profiles, \
{s['members']:,} memberships and their entered events written) | {s['first_seconds']:.1f} s, \
{s['first_checks_per_s']:,.0f} profile-segment checks/s |
| segment re-evaluation, steady-state full pass (the time pass's work) | **{s['checks_per_s']:,.0f} \
profile-segment checks/s** ({s['seconds']:.2f} s) |

Command: `python -m bench.identity --batches {args.batches} --batch-size {p['batch_size']} --rate {lk['rate']:.0f}`
"""
    print(table)
    write_section("identity", table, r)


if __name__ == "__main__":
    main()
