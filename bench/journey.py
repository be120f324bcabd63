"""journey-svc executor figures (no messaging yet, so no send steps): N people enter a journey
(wait 1 day -> random split 50/50 -> wait 1 hour -> exit) and the durable worker runs it.

    python -m bench.journey [--people 200000] [--workers 2]

Measured on an embedded PostgreSQL with the journey migrations, the worker in this process on a
ManualClock (so "a day later" is instant and the timer lag is the worker's own):
1. the first step for everyone (enter -> wait armed): seconds and enrollments/s;
2. a day later, every timer falls due at once: seconds to drain, steps/s, and the timer lag
   (how long after its due time each enrollment was handled) p50/p99;
3. raw ceiling: asyncpg COPY of as many rows into a table of the same width.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from bench.common import percentile, write_section
from journey.app import MIGRATIONS
from journey.background.worker import Effects, Worker
from mcloud_common.clock import ManualClock
from mcloud_common.db import create_pool, ensure_database, with_database
from mcloud_common.embedded import EmbeddedPostgres, free_port
from mcloud_common.ids import new_id
from mcloud_common.migrations import upgrade_async

DEFINITION = {"entry": {"type": "api"}, "start": "wait-1d",
              "steps": [{"id": "wait-1d", "type": "wait", "duration": "P1D", "next": "split"},
                        {"id": "split", "type": "random_split", "branches": [
                            {"percent": 50, "next": "wait-1h", "label": "A"},
                            {"percent": 50, "next": "wait-1h", "label": "B"}]},
                        {"id": "wait-1h", "type": "wait", "duration": "PT1H", "next": "done"},
                        {"id": "done", "type": "exit"}]}


async def drain(workers: list[Worker]) -> None:
    while sum(await asyncio.gather(*(w.run_once() for w in workers))):
        pass


async def main_async(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="mcloud-bench-journey-"))
    server = EmbeddedPostgres(root / "pg", free_port())
    server.start(fast=True)
    try:
        url = with_database(server.url(), "journey_bench")
        await ensure_database(url)
        await upgrade_async(MIGRATIONS, url)
        pool = await create_pool(url, max_size=10)
        tenant, jid, t0 = uuid.uuid4(), new_id(), datetime(2026, 11, 1, 9, tzinfo=UTC)
        await pool.execute("INSERT INTO journeys (tenant_id, id, name, status, draft, published_version, created_at, "
                           "updated_at) VALUES ($1, $2, 'bench', 'active', $3, 1, $4, $4)", tenant, jid,
                           orjson.dumps(DEFINITION).decode(), t0)
        await pool.execute("INSERT INTO journey_versions (tenant_id, journey_id, version, definition, entry_type, "
                           "published_at) VALUES ($1, $2, 1, $3, 'api', $4)", tenant, jid,
                           orjson.dumps(DEFINITION).decode(), t0)
        rows = [(tenant, new_id(), jid, 1, uuid.uuid4(), "wait-1d", t0, t0, t0) for _ in range(args.people)]
        start = time.perf_counter()
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                "enrollments", records=rows,
                columns=["tenant_id", "id", "journey_id", "version", "profile_id", "step_id", "due_at", "entered_at",
                         "updated_at"])
        copy_s = time.perf_counter() - start
        clock = ManualClock(t0)
        effects = Effects("127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:1")
        workers = [Worker(pool, clock, effects, batch=args.batch, lease_seconds=600) for _ in range(args.workers)]
        start = time.perf_counter()
        await drain(workers)
        first_s = time.perf_counter() - start
        # a day later: every timer is due at once; lag = wall time from the moment they fell due
        clock.set(t0 + timedelta(days=1, seconds=1))
        lags: list[float] = []
        for w in workers:
            original = w._save

            async def timed(done, now, _orig=original):
                await _orig(done, now)
                lags.extend([time.perf_counter() - due_wall] * len(done))

            w._save = timed
        due_wall = time.perf_counter()
        await drain(workers)
        due_s = time.perf_counter() - due_wall
        steps = sum(w.steps_total for w in workers)
        await effects.close()
        await pool.close()
    finally:
        server.stop()
        server.destroy()
    return {"people": args.people, "workers": args.workers, "copy_rows_per_s": args.people / copy_s,
            "first_step_s": first_s, "first_per_s": args.people / first_s, "due_drain_s": due_s,
            "due_per_s": args.people / due_s, "steps": steps, "lag_p50_s": percentile(lags, 50),
            "lag_p99_s": percentile(lags, 99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2000)
    r = asyncio.run(main_async(parser.parse_args()))
    table = f"""
journey-svc's durable executor (worker in-process on a ManualClock, embedded PostgreSQL, no send steps:
messaging is not built yet), {r['people']:,} people, {r['workers']} workers.

| measure | value |
|---|---|
| first step for everyone (enter -> 1-day timer armed) | {r['first_step_s']:.1f} s, \
**{r['first_per_s']:,.0f} enrollments/s** |
| a day later, all timers due at once: drain (split -> 1-hour timer) | \
{r['due_drain_s']:.1f} s, **{r['due_per_s']:,.0f} enrollments/s** |
| timer lag (due -> handled) p50 / p99 | {r['lag_p50_s']:.1f} s / {r['lag_p99_s']:.1f} s |
| raw ceiling: asyncpg COPY of the same rows | {r['copy_rows_per_s']:,.0f} rows/s |
| extrapolated: a 1,000,000-person step | {1_000_000 / r['due_per_s'] / 60:.1f} min |
"""
    write_section("journey", table, r)
    print(table)


if __name__ == "__main__":
    main()
