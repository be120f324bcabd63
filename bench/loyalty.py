"""loyalty-svc figures: earn transactions/s (over gRPC and from order events on the bus), redemption
latency under concurrency, and the ledger's drift after it all (must be zero), next to raw ceilings
of this machine measured in the same run.

    python -m bench.loyalty [--members 2000] [--earns 20000] [--bus-orders 10000] [--spends 5000] [--concurrency 64]

1. Earn over gRPC: EarnPoints with an order (rules: 100 points per order + 1 per currency unit,
   pending, qualifying, tier evaluation, outbox events) from `concurrency` closed-loop clients over
   `members` members; raw ceilings: a gRPC health check (bare grpc.aio round trip to the same server)
   and a one-row asyncpg transaction (BEGIN; UPDATE ... ; INSERT; COMMIT) at the same concurrency.
2. Earn from the bus: "Order Completed" events put on identity's streams; the time until loyalty's
   consumer has booked all of them.
3. Redemptions: SpendPoints from `concurrency` clients, a quarter of them on 16 hot members
   (contention on one member row), p50/p99 latency.
4. Drift: for every member, sum(ledger) == sum(open lots) - debt == the balance GetMember reports
   (available + pending), and booked points == what the requests should have earned.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import grpc
import orjson
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.common import create_tenant, percentile, write_section
from loyalty.testing import sports_program
from mcloud.events.v1 import event_pb2
from mcloud.loyalty.v1 import loyalty_pb2 as pb
from mcloud.loyalty.v1 import loyalty_pb2_grpc
from mcloud_cli.stack import start_stack
from mcloud_common.bus import publish
from mcloud_common.db import asyncpg_dsn
from mcloud_common.grpc_client import make_channel, tenant_metadata
from mcloud_common.ids import new_id_str
from mcloud_common.testing.services import wait_until


async def closed_loop(n: int, concurrency: int, call) -> dict:
    """Run call(i) for i in range(n) from `concurrency` workers; throughput and latency."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(n))

    async def worker() -> None:
        nonlocal errors
        for i in counter:
            t = time.perf_counter()
            try:
                await call(i)
            except grpc.aio.AioRpcError:
                errors += 1
            latencies.append((time.perf_counter() - t) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    return {"requests": n, "seconds": seconds, "per_s": n / seconds, "errors": errors,
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}


async def pg_ceiling(url: str, n: int, concurrency: int) -> float:
    """One-row read-modify-write transactions per second on a small table (the shape of a ledger write)."""
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=10, max_size=10)
    await pool.execute("DROP TABLE IF EXISTS bench_ceiling; CREATE TABLE bench_ceiling (id int primary key, v bigint);"
                       "DROP TABLE IF EXISTS bench_rows;"
                       "CREATE TABLE bench_rows (id bigserial primary key, k int, v bigint);"
                       "INSERT INTO bench_ceiling SELECT g, 0 FROM generate_series(1, 2000) g")

    async def txn(i: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE bench_ceiling SET v = v + 1 WHERE id = $1", i % 2000 + 1)
            await conn.execute("INSERT INTO bench_rows (k, v) VALUES ($1, 1)", i)

    r = await closed_loop(n, concurrency, txn)
    await pool.execute("DROP TABLE bench_ceiling; DROP TABLE bench_rows")
    await pool.close()
    return r["per_s"]


async def drift(url: str, tenant: str, program_id: str) -> dict:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        row = await conn.fetchrow(
            """
            WITH m AS (
                SELECT m.profile_id, m.debt,
                       (SELECT coalesce(sum(points), 0) FROM ledger_entries e WHERE e.tenant_id = m.tenant_id
                          AND e.program_id = m.program_id AND e.profile_id = m.profile_id) AS ledger,
                       (SELECT coalesce(sum(remaining), 0) FROM lots l WHERE l.tenant_id = m.tenant_id
                          AND l.program_id = m.program_id AND l.profile_id = m.profile_id) AS lots
                FROM members m WHERE m.tenant_id = $1 AND m.program_id = $2)
            SELECT count(*) FILTER (WHERE ledger <> lots - debt) AS drifting, count(*) AS members,
                   coalesce(sum(ledger), 0) AS ledger_total
            FROM m
            """, uuid.UUID(tenant), uuid.UUID(program_id))
        earned = await conn.fetchval("SELECT coalesce(sum(points), 0) FROM ledger_entries WHERE tenant_id = $1 "
                                     "AND kind = 'earn'", uuid.UUID(tenant))
        spent = await conn.fetchval("SELECT coalesce(-sum(points), 0) FROM ledger_entries WHERE tenant_id = $1 "
                                    "AND kind = 'spend'", uuid.UUID(tenant))
        return {**dict(row), "earned": earned, "spent": spent}
    finally:
        await conn.close()


async def balance_mismatches(url: str, stub, md, tenant: str, program_id: str, concurrency: int) -> int:
    """Members whose balance as the service reports it (GetMember: available + pending) differs from
    the sum of their ledger entries."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        sums = await conn.fetch(
            "SELECT m.profile_id, (SELECT coalesce(sum(points), 0) FROM ledger_entries e WHERE e.tenant_id = "
            "m.tenant_id AND e.program_id = m.program_id AND e.profile_id = m.profile_id) AS ledger "
            "FROM members m WHERE m.tenant_id = $1 AND m.program_id = $2", uuid.UUID(tenant), uuid.UUID(program_id))
    finally:
        await conn.close()
    wrong = 0

    async def check(i: int) -> None:
        nonlocal wrong
        row = sums[i]
        b = (await stub.GetMember(pb.GetMemberRequest(program_id=program_id, profile_id=str(row["profile_id"])),
                                  metadata=md)).member.balance
        if b.available + b.pending != row["ledger"]:
            wrong += 1

    r = await closed_loop(len(sums), concurrency, check)
    return wrong + r["errors"]


def order_points(total_minor: int) -> int:
    return 100 + total_minor // 100


async def main_async(args: argparse.Namespace) -> dict:
    home = Path(tempfile.mkdtemp(prefix="mcloud-bench-"))
    rng = random.Random(7)
    with start_stack(home / "mcloud") as stack:
        keys = create_tenant(stack.home, f"bench-{uuid.uuid4().hex[:6]}")
        tenant = keys["tenant_id"]
        md = tenant_metadata(tenant)
        channel = make_channel(stack.grpc_address("loyalty"), default_timeout=30)
        stub = loyalty_pb2_grpc.LoyaltyServiceStub(channel)
        program = sports_program(pending_days=0, auto_enroll=True)
        for tier in program.tiers:  # no tier multipliers: the expected points are then exact to check
            tier.points_multiplier = 1.0
        program_id = (await stub.UpsertProgram(pb.UpsertProgramRequest(program=program), metadata=md)).program.id
        members = [str(uuid.uuid4()) for _ in range(args.members)]
        await closed_loop(len(members), args.concurrency, lambda i: stub.EnrollMember(
            pb.EnrollMemberRequest(program_id=program_id, profile_id=members[i]), metadata=md))

        totals = [rng.randrange(1_000, 40_000) for _ in range(args.earns)]
        expected = sum(order_points(t) for t in totals)

        async def earn(i: int):
            return await stub.EarnPoints(pb.EarnPointsRequest(
                program_id=program_id, profile_id=members[i % len(members)], idempotency_key=f"e{i}",
                order=pb.Order(order_id=f"o{i}", total_minor=totals[i], currency="EUR")), metadata=md)

        earns = await closed_loop(args.earns, args.concurrency, earn)

        # the same rules fed from identity's stream, as the storefront's orders arrive
        redis = aioredis.from_url(stack.urls["valkey"])
        bus_orders = args.bus_orders
        bus_totals = [rng.randrange(1_000, 40_000) for _ in range(bus_orders)]
        expected += sum(order_points(t) for t in bus_totals)
        events = [event_pb2.Event(
            id=new_id_str(), tenant_id=tenant, type="track", name="Order Completed", source="identity",
            profile_id=members[i % len(members)], channel=event_pb2.CHANNEL_WEB,
            properties_json=orjson.dumps({"order_id": f"b{i}", "total": bus_totals[i] / 100,
                                          "currency": "EUR"}).decode()) for i in range(bus_orders)]
        db = await asyncpg.connect(asyncpg_dsn(stack.database_url("loyalty")))
        start = time.perf_counter()
        for chunk in range(0, len(events), 1000):
            await publish(redis, events[chunk:chunk + 1000], "identity", 4)

        async def booked() -> bool:
            return await db.fetchval("SELECT count(*) FROM qualifying WHERE tenant_id = $1 AND order_id LIKE 'b%'",
                                     uuid.UUID(tenant)) >= bus_orders

        await wait_until(booked, timeout=600, interval=0.2, message="bus orders booked")
        bus_seconds = time.perf_counter() - start
        await db.close()
        await redis.aclose()

        hot = members[:16]

        async def spend(i: int):
            who = hot[i % 16] if i % 4 == 0 else members[rng.randrange(len(members))]
            return await stub.SpendPoints(pb.SpendPointsRequest(program_id=program_id, profile_id=who, points=10,
                                                                reason="reward", idempotency_key=f"s{i}"), metadata=md)

        spends = await closed_loop(args.spends, args.concurrency, spend)
        health = health_pb2_grpc.HealthStub(channel)
        grpc_ceiling = await closed_loop(args.earns, args.concurrency, lambda i: health.Check(
            health_pb2.HealthCheckRequest(service=""), metadata=md))
        pg = await pg_ceiling(stack.database_url("loyalty"), args.earns, args.concurrency)
        check = await drift(stack.database_url("loyalty"), tenant, program_id)
        check["balance_mismatch"] = await balance_mismatches(stack.database_url("loyalty"), stub, md, tenant,
                                                             program_id, args.concurrency)
        await channel.close()
    return {"earn": earns, "bus": {"orders": bus_orders, "seconds": bus_seconds, "per_s": bus_orders / bus_seconds},
            "spend": spends, "grpc_ceiling_per_s": grpc_ceiling["per_s"], "pg_txn_ceiling_per_s": pg,
            "drift": {**check, "expected_earned": expected},
            "params": {"members": args.members, "concurrency": args.concurrency}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--earns", type=int, default=20000)
    parser.add_argument("--spends", type=int, default=5000)
    parser.add_argument("--bus-orders", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    r = asyncio.run(main_async(args))
    e, b, s, d, p = r["earn"], r["bus"], r["spend"], r["drift"], r["params"]
    drift_ok = d["drifting"] == 0 and d["earned"] == d["expected_earned"] and d["balance_mismatch"] == 0
    d["zero"] = drift_ok
    table = f"""
loyalty-svc over gRPC (stack started as `mcloud up` starts it; the load generator runs on the same
2-core machine), {p['members']:,} members, {p['concurrency']} concurrent clients.

| measure | value |
|---|---|
| earn transactions (EarnPoints with an order: 2 rules, lots, qualifying, tier check, outbox) | \
**{e['per_s']:,.0f} earns/s** ({e['requests']:,} in {e['seconds']:.1f} s, {e['errors']} errors) |
| earn latency p50 / p99 | {e['p50_ms']:.1f} ms / {e['p99_ms']:.1f} ms |
| earns from "Order Completed" events on the bus (a stream read per transaction, orders booked together) | \
**{b['per_s']:,.0f} orders/s** ({b['orders']:,} in {b['seconds']:.1f} s) |
| redemptions (SpendPoints, 1/4 on 16 hot members) | {s['per_s']:,.0f} /s, \
**p50 {s['p50_ms']:.1f} ms / p99 {s['p99_ms']:.1f} ms**, {s['errors']} refused |
| raw ceiling: bare gRPC round trip (health check) at the same concurrency | {r['grpc_ceiling_per_s']:,.0f} /s |
| raw ceiling: one-row asyncpg read-modify-write transaction | {r['pg_txn_ceiling_per_s']:,.0f} /s |
| **ratio earns / gRPC ceiling**, **earns / transaction ceiling** | \
**{e['per_s'] / r['grpc_ceiling_per_s']:.2f}**, **{e['per_s'] / r['pg_txn_ceiling_per_s']:.2f}** |
| drift: members whose ledger sum differs from open lots - debt | **{d['drifting']}** of {d['members']:,} |
| drift: members whose reported balance (GetMember available + pending) differs from their ledger sum \
| **{d['balance_mismatch']}** of {d['members']:,} |
| points booked as earned vs. expected from the requests | {d['earned']:,} vs. {d['expected_earned']:,} \
({'exact' if drift_ok else 'MISMATCH'}) |
"""
    write_section("loyalty", table, r)
    print(table)


if __name__ == "__main__":
    main()
