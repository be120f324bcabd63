"""Segment membership kept current inside the identity process:

- the worker (every WORKER_INTERVAL s) drains the dirty-profile queue: each claimed batch is
  evaluated against every segment of its tenant in the transaction that claimed it, so memberships
  follow events in well under a second;
- the backfill (every BACKFILL_INTERVAL s) fully evaluates segments whose rules changed and were
  not evaluated by UpsertSegment within its time budget (or read a segment that changed);
- the time pass (every TIME_PASS_INTERVAL s) fully re-evaluates time-dependent segments, so windows
  that expire let members go (and "did X but not Y within Z" lets them in) without any new event.

`run_worker_once` (backfill, then drain) and `run_time_pass_once` are plain functions over a pool
(tests call them)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from identity.domain.segments import evaluation_order, time_dependent_ids
from identity.repo import segments as repo
from identity.settings import IdentitySettings
from mcloud_common.clock import Clock
from mcloud_common.runtime import Runtime

WORKER_INTERVAL = 0.2
BACKFILL_INTERVAL = 0.5
TIME_PASS_INTERVAL = 60.0
# Profiles per claimed batch: the batch's transaction holds their queue rows, and an ingest
# marking one of them again waits for it, so batches stay small.
BATCH = 500
SHARDS = IdentitySettings.model_fields["stream_shards"].default


async def backfill_stale(pool: asyncpg.Pool, clock: Clock, *, shards: int = SHARDS) -> int:
    """Fully evaluate the segments whose current rules never were (saved, or read a segment that
    changed). Returns how many were evaluated."""
    async with pool.acquire() as conn:
        done = 0
        for tenant_id, segment_id in await repo.stale_segments(conn):
            done += await repo.evaluate_segment(conn, tenant_id, segment_id, clock.now(), shards=shards,
                                                only_if_stale=True)
        return done


async def drain(pool: asyncpg.Pool, clock: Clock, *, shards: int = SHARDS, batch: int = BATCH) -> int:
    """Evaluate queued profiles, a batch per transaction, until the queue is empty. Returns the
    profiles x segments evaluated."""
    async with pool.acquire() as conn:
        evaluated = 0
        while True:
            async with conn.transaction():
                claimed = await repo.claim_dirty(conn, batch)
                now = clock.now()
                for tenant_id in sorted(claimed):  # tenants in order: segment locks in one global order
                    evaluated += await repo.evaluate_profiles(conn, tenant_id, claimed[tenant_id], now,
                                                              shards=shards)
            if sum(len(ids) for ids in claimed.values()) < batch:
                return evaluated


async def run_worker_once(pool: asyncpg.Pool, clock: Clock, *, shards: int = SHARDS, batch: int = BATCH) -> int:
    """What the running service does continuously, once: backfill stale segments, then drain the
    queue. Returns the profiles x segments evaluated by the drain."""
    await backfill_stale(pool, clock, shards=shards)
    return await drain(pool, clock, shards=shards, batch=batch)


async def run_time_pass_once(pool: asyncpg.Pool, now: datetime, *, shards: int = SHARDS) -> int:
    """Fully re-evaluate every time-dependent segment (and the segments reading one), each in its own
    transaction, readers after what they read. Returns the segments evaluated."""
    async with pool.acquire() as conn:
        by_tenant = await repo.tenant_segments(conn)
        done = 0
        for tenant_id, rules in sorted(by_tenant.items()):
            timed = time_dependent_ids(rules)
            for segment_id in evaluation_order(rules):
                if segment_id in timed:
                    done += await repo.evaluate_segment(conn, tenant_id, segment_id, now, shards=shards,
                                                        readers_stale=False)
        return done


async def reevaluate_all(pool: asyncpg.Pool, tenant_id: str, now: datetime, *, shards: int = SHARDS) -> int:
    """Fully re-evaluate every segment of one tenant (for the bench). Returns profiles x segments."""
    async with pool.acquire() as conn:
        rules = (await repo.tenant_segments(conn, tenant_id)).get(tenant_id, {})
        for segment_id in evaluation_order(rules):
            await repo.evaluate_segment(conn, tenant_id, segment_id, now, shards=shards, readers_stale=False)
        return await repo.count_profiles(conn, tenant_id) * len(rules)


async def install(runtime: Runtime, settings: IdentitySettings) -> None:
    """Start the queue drain, the backfill of stale segments and the time pass on `runtime` (they
    stop with it). Separate tasks: a long backfill or pass never holds up real-time evaluation."""
    pool, clock, shards = runtime.pool, runtime.clock, settings.stream_shards
    runtime.every(WORKER_INTERVAL, lambda: drain(pool, clock, shards=shards), name="segment-worker")
    runtime.every(BACKFILL_INTERVAL, lambda: backfill_stale(pool, clock, shards=shards), name="segment-backfill")
    runtime.every(TIME_PASS_INTERVAL, lambda: run_time_pass_once(pool, clock.now(), shards=shards),
                  name="segment-time-pass")
