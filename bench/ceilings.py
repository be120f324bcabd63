"""Raw ceilings of this machine, measured in this run: what the building blocks do alone, so every
bench figure can be read as a ratio to them.

    python -m bench.ceilings [--seconds 3] [--rate 500] [--concurrency 32] [--no-chain]
                             [--pg-url URL --redis-url URL]

Starts a stack the way `mcloud up` does (so PostgreSQL and Valkey run with the stack's settings and
the services idle beside them, as in every bench; `--pg-url`/`--redis-url` measure existing servers
instead), then, a few seconds each (the bare servers are bench.bare_servers, in child processes):

1. asyncpg COPY rows/s: 1,000 event-like rows per COPY, one transaction each, from 4 connections,
   into a plain (logged, indexed by its primary key) table in the stack's PostgreSQL, dropped after.
   Not a TEMP table: those skip the WAL and would overstate what a durable insert can do.
2. Redis/Valkey pipelined ops/s: SET+GET and XADD (the bus's write), 100 commands per pipeline,
   4 pipelines in flight, on the stack's Valkey.
3. Bare grpc.aio unary echo (bytes, generic handler, no interceptors) served by its own process
   with the services' server options and uvloop: req/s from `concurrency` concurrent callers on one
   channel (closed loop), and p50/p99 at `rate` req/s open loop (latency from each call's scheduled
   start), from this process, as the benches call the services.
4. Bare FastAPI: one trivial route on uvicorn with the gateway's server settings (uvloop, httptools,
   one worker, no access log), its own process, driven by the benches' load generator
   (bench.loadgen): max req/s over `concurrency` keep-alive connections and p50/p99 at `rate` req/s.
5. Bare chain FastAPI -> gRPC -> asyncpg: a route that makes one gRPC call to a servicer that
   reads one row by primary key (asyncpg pool): the shape of every gateway read, with nothing of ours.

Writes its section of REPORT.md and results/ceilings.json.
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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import grpc
import orjson
import redis.asyncio as aioredis

from bench.bare_servers import CHAIN_ROWS, ECHO
from bench.common import BENCH_DIR, percentile, write_section
from bench.loadgen import open_loop
from mcloud_common.db import asyncpg_dsn
from mcloud_common.embedded import free_port, port_open

REPO = BENCH_DIR.parent


# ---- asyncpg COPY ---------------------------------------------------------------------------------


async def copy_ceiling(pg_url: str, *, seconds: float = 3.0, chunk: int = 1000, connections: int = 4) -> dict:
    """Rows/s of asyncpg COPY, `chunk` event-like rows per COPY in its own transaction, for `seconds`."""
    table = f"bench_copy_{uuid.uuid4().hex[:8]}"
    conns = [await asyncpg.connect(asyncpg_dsn(pg_url)) for _ in range(connections)]
    tenant, now = uuid.uuid4(), datetime.now(UTC)
    props = orjson.dumps({"product_id": "sku-1", "price": 129.0, "category": "running"}).decode()
    ctx = orjson.dumps({"library": {"name": "analytics.js"}, "page": {"path": "/p"}}).decode()
    template = [(tenant, str(uuid.uuid4()), "track", "Product Viewed", f"anon-{i}", props, ctx, now, now)
                for i in range(chunk)]
    columns = ("id", "tenant_id", "message_id", "type", "name", "anonymous_id", "properties", "context",
               "timestamp", "received_at")
    await conns[0].execute(f"""
        CREATE TABLE {table} (id bigint PRIMARY KEY, tenant_id uuid NOT NULL, message_id text NOT NULL,
            type text NOT NULL, name text NOT NULL, anonymous_id text NOT NULL, properties jsonb NOT NULL,
            context jsonb NOT NULL, timestamp timestamptz NOT NULL, received_at timestamptz NOT NULL)""")
    counter = iter(range(10**12))
    rows = 0
    try:
        deadline = time.perf_counter() + seconds

        async def worker(conn: asyncpg.Connection) -> None:
            nonlocal rows
            while time.perf_counter() < deadline:
                base = next(counter) * chunk
                records = [(base + j, *rest) for j, rest in enumerate(template)]
                async with conn.transaction():
                    await conn.copy_records_to_table(table, records=records, columns=columns)
                rows += chunk

        start = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in conns))
        elapsed = time.perf_counter() - start
    finally:
        await conns[0].execute(f"DROP TABLE IF EXISTS {table}")
        for c in conns:
            await c.close()
    return {"rows": rows, "seconds": elapsed, "rows_per_s": rows / elapsed, "chunk": chunk,
            "connections": connections}


# ---- Redis pipelined ------------------------------------------------------------------------------


async def redis_ceiling(redis_url: str, *, seconds: float = 3.0, pipeline: int = 100, clients: int = 4) -> dict:
    """Commands/s with `pipeline` commands per round trip and `clients` pipelines in flight: SET+GET
    pairs for half the time, XADD of a bus-sized envelope (~300 bytes) for the other half."""
    redis = aioredis.from_url(redis_url)
    prefix = f"bench:ceiling:{uuid.uuid4().hex[:8]}"
    value = os.urandom(100)
    envelope = {b"e": os.urandom(300)}

    async def timed(fill: Callable[[object, int], None]) -> dict:
        ops = 0
        deadline = time.perf_counter() + seconds / 2

        async def worker(w: int) -> None:
            nonlocal ops
            while time.perf_counter() < deadline:
                pipe = redis.pipeline(transaction=False)
                fill(pipe, w)
                await pipe.execute()
                ops += pipeline

        start = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        elapsed = time.perf_counter() - start
        return {"ops": ops, "seconds": elapsed, "ops_per_s": ops / elapsed}

    def set_get(pipe, w: int) -> None:
        for j in range(pipeline // 2):
            key = f"{prefix}:{w}:{j}"
            pipe.set(key, value)
            pipe.get(key)

    def xadd(pipe, w: int) -> None:
        for _ in range(pipeline):
            pipe.xadd(f"{prefix}:stream:{w}", envelope)

    try:
        sg = await timed(set_get)
        xa = await timed(xadd)
    finally:
        keys = [k async for k in redis.scan_iter(f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await redis.delete(*keys[i:i + 1000])
        await redis.aclose()
    return {"set_get": sg, "xadd": xa, "pipeline": pipeline, "clients": clients,
            "ops_per_s": sg["ops_per_s"], "xadd_per_s": xa["ops_per_s"]}


# ---- the bare servers (child processes: bench.bare_servers) -------------------------------------


class Child:
    """`python -m bench.bare_servers <command> PORT [ARG]` in its own process; `async with` waits
    until its port opens (several can start at once: `ready()`) and stops it on the way out."""

    def __init__(self, command: str, arg: str | None = None) -> None:
        self.command, self.port = command, free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_servers", command, str(self.port), *([arg] if arg else [])],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL)

    async def ready(self, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"bench.bare_servers {self.command} did not start")
            await asyncio.sleep(0.05)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    async def __aenter__(self) -> Child:
        try:
            await self.ready()
        except BaseException:
            self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


# ---- load: gRPC closed and open loop, HTTP through bench.loadgen ----------------------------------


async def grpc_closed_loop(call: Callable[[int], Awaitable[object]], *, seconds: float, concurrency: int) -> dict:
    """`concurrency` callers back to back for `seconds`: req/s and per-call latency."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(10**12))
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                await call(next(counter))
            except grpc.aio.AioRpcError:
                errors += 1
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {"requests": len(latencies), "seconds": elapsed, "req_per_s": len(latencies) / elapsed,
            "errors": errors, "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000}


async def grpc_open_loop(call: Callable[[int], Awaitable[object]], *, rate: float, seconds: float,
                         concurrency: int = 64) -> dict:
    """Calls at `rate` per second, latency from each call's scheduled start (no coordinated omission)."""
    n = max(1, int(rate * seconds))
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while (item := await queue.get()) is not None:
            i, due = item
            try:
                await call(i)
            except grpc.aio.AioRpcError:
                errors += 1
            latencies.append(time.perf_counter() - due)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    start = time.perf_counter() + 0.05
    for i in range(n):
        due = start + i / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i, due))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    return {"requests": n, "rate": rate, "achieved_rps": n / elapsed, "errors": errors,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": max(latencies) * 1000}


async def http_max(url: str, paths: Callable[[int], list[str]], *, seconds: float, connections: int) -> dict:
    """Max req/s through bench.loadgen: everything due at once over `connections` keep-alive
    connections (a short calibration run sizes the real one to about `seconds`)."""
    probe = await open_loop(url, paths(max(200, connections * 10)), rate=1e9, headers={}, connections=connections)
    n = max(connections, int(probe["achieved_rps"] * seconds))
    r = await open_loop(url, paths(n), rate=1e9, headers={}, connections=connections)
    return {"requests": n, "req_per_s": r["achieved_rps"], "statuses": r["statuses"]}


async def http_ceiling(url: str, paths: Callable[[int], list[str]], *, seconds: float, rate: float,
                       connections: int) -> dict:
    top = await http_max(url, paths, seconds=seconds, connections=connections)
    at = await open_loop(url, paths(max(1, int(rate * seconds))), rate=rate, headers={})
    return {**top, "at_rate": at}


async def grpc_echo_ceiling(*, seconds: float = 3.0, rate: float = 500, concurrency: int = 32) -> dict:
    async with Child("grpc") as server, grpc.aio.insecure_channel(server.target) as channel:
        echo = channel.unary_unary(ECHO)
        payload = os.urandom(64)

        def call(_: int):
            return echo(payload, timeout=10)

        await grpc_closed_loop(call, seconds=min(0.5, seconds), concurrency=concurrency)  # warm-up
        top = await grpc_closed_loop(call, seconds=seconds, concurrency=concurrency)
        at = await grpc_open_loop(call, rate=rate, seconds=seconds)
    return {**top, "concurrency": concurrency, "at_rate": at}


async def fastapi_ceiling(*, seconds: float = 3.0, rate: float = 500, connections: int = 32) -> dict:
    async with Child("http") as server:
        def paths(n: int) -> list[str]:
            return ["/ping"] * n

        await open_loop(server.url, paths(200), rate=1e9, headers={}, connections=connections)  # warm-up
        r = await http_ceiling(server.url, paths, seconds=seconds, rate=rate, connections=connections)
    return {**r, "connections": connections}


async def chain_ceiling(pg_url: str, *, seconds: float = 3.0, rate: float = 500, connections: int = 32) -> dict:
    """FastAPI -> one gRPC call -> one asyncpg primary-key read, each in its own process."""
    conn = await asyncpg.connect(asyncpg_dsn(pg_url))
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_chain; CREATE TABLE bench_chain (id int PRIMARY KEY, v text);"
                           "INSERT INTO bench_chain SELECT g, md5(g::text) FROM generate_series(0, "
                           f"{CHAIN_ROWS - 1}) g")
        service = Child("grpc", asyncpg_dsn(pg_url))
        front = Child("http", service.target)
        try:
            await asyncio.gather(service.ready(), front.ready())

            def paths(n: int) -> list[str]:
                return [f"/chain/{i * 7919 % CHAIN_ROWS}" for i in range(n)]

            await open_loop(front.url, paths(200), rate=1e9, headers={}, connections=connections)  # warm-up
            r = await http_ceiling(front.url, paths, seconds=seconds, rate=rate, connections=connections)
        finally:
            front.close()
            service.close()
    finally:
        await conn.execute("DROP TABLE IF EXISTS bench_chain")
        await conn.close()
    return {**r, "connections": connections}


# ---- the run --------------------------------------------------------------------------------------


async def measure(pg_url: str, redis_url: str, args: argparse.Namespace) -> dict:
    s, rate, conc = args.seconds, args.rate, args.concurrency
    out: dict = {"params": {"seconds": s, "rate": rate, "concurrency": conc}}
    steps: list[tuple[str, Callable[[], Awaitable[dict]]]] = [
        ("copy", lambda: copy_ceiling(pg_url, seconds=s)),
        ("redis", lambda: redis_ceiling(redis_url, seconds=s)),
        ("grpc_echo", lambda: grpc_echo_ceiling(seconds=s, rate=rate, concurrency=conc)),
        ("fastapi", lambda: fastapi_ceiling(seconds=s, rate=rate, connections=conc)),
    ]
    if not args.no_chain:
        steps.append(("chain", lambda: chain_ceiling(pg_url, seconds=s, rate=rate, connections=conc)))
    for name, step in steps:
        t = time.perf_counter()
        out[name] = await step()
        print(f"{name}: {summary_line(name, out[name])} ({time.perf_counter() - t:.1f} s)", flush=True)
    return out


def summary_line(name: str, r: dict) -> str:
    if name == "copy":
        return f"{r['rows_per_s']:,.0f} rows/s"
    if name == "redis":
        return f"SET/GET {r['ops_per_s']:,.0f} ops/s, XADD {r['xadd_per_s']:,.0f} ops/s"
    at = r["at_rate"]
    return f"{r['req_per_s']:,.0f} req/s, at {at['rate']:.0f} req/s p50 {at['p50_ms']:.2f} ms p99 {at['p99_ms']:.2f} ms"


async def main_async(args: argparse.Namespace) -> dict:
    if args.pg_url and args.redis_url:
        return await measure(args.pg_url, args.redis_url, args)
    from mcloud_cli.stack import start_stack
    from mcloud_common.db import ensure_database, with_database

    home = Path(tempfile.mkdtemp(prefix="mcloud-bench-"))
    t = time.perf_counter()
    with start_stack(home / "mcloud") as stack:
        print(f"stack up in {time.perf_counter() - t:.1f} s", flush=True)
        url = with_database(stack.database_url("identity"), "bench_ceilings")
        await ensure_database(url)
        return await measure(url, stack.urls["valkey"], args)


def markdown(r: dict) -> str:
    p, c, rd, g, f = r["params"], r["copy"], r["redis"], r["grpc_echo"], r["fastapi"]
    lines = [f"""
What the building blocks do alone on this machine, measured in the same `make bench` run as the
figures they are compared with (the stack's PostgreSQL and Valkey, its services idle beside them;
load generators in this process, as in every bench). {p['seconds']:g} s per measurement.

| ceiling | throughput | p50 / p99 at {p['rate']:.0f} req/s |
|---|---|---|
| asyncpg COPY, {c['chunk']:,} event-like rows per COPY and transaction, {c['connections']} connections, \
logged table | **{c['rows_per_s']:,.0f} rows/s** | |
| Valkey pipelined SET+GET, {rd['pipeline']} per pipeline, {rd['clients']} in flight | \
**{rd['ops_per_s']:,.0f} ops/s** | |
| Valkey pipelined XADD (300-byte envelope), {rd['pipeline']} per pipeline | **{rd['xadd_per_s']:,.0f} ops/s** | |
| bare grpc.aio unary echo, {g['concurrency']} concurrent callers, one channel | **{g['req_per_s']:,.0f} req/s** \
(p99 {g['p99_ms']:.1f} ms at that load) | {g['at_rate']['p50_ms']:.2f} / {g['at_rate']['p99_ms']:.2f} ms |
| bare FastAPI `GET /ping` (uvicorn as the gateway runs it), bench.loadgen, {f['connections']} connections \
| **{f['req_per_s']:,.0f} req/s** | {f['at_rate']['p50_ms']:.2f} / {f['at_rate']['p99_ms']:.2f} ms |"""]
    if ch := r.get("chain"):
        lines.append(f"| bare chain FastAPI -> gRPC -> asyncpg primary-key read (3 processes) | "
                     f"**{ch['req_per_s']:,.0f} req/s** | {ch['at_rate']['p50_ms']:.2f} / "
                     f"{ch['at_rate']['p99_ms']:.2f} ms |")
    lines.append(f"""
The p50 / p99 column is open loop at {p['rate']:.0f} req/s (the rate the latency targets are set at),
latency from each request's scheduled start. Valkey figures are through redis-py, the client the bus uses
(on 2 cores the Python side, not Valkey, is what runs out).
Command: `python -m bench.ceilings --seconds {p['seconds']:g}`
""")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rate", type=float, default=500, help="open-loop rate for the latency figures")
    parser.add_argument("--concurrency", type=int, default=32, help="gRPC callers / HTTP connections")
    parser.add_argument("--no-chain", action="store_true", help="skip the FastAPI -> gRPC -> asyncpg chain")
    parser.add_argument("--pg-url", help="measure on this PostgreSQL database instead of a fresh stack's")
    parser.add_argument("--redis-url", help="... and this Valkey/Redis (both needed)")
    args = parser.parse_args(argv)
    r = asyncio.run(main_async(args))
    table = markdown(r)
    print(table)
    write_section("ceilings", table, r)


if __name__ == "__main__":
    main()
