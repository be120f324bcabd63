"""Periodic work: served lists flushed in batches, intents that lock with time (a cart held long
enough), scheduled model training, and served lists / clicks past retention deleted."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from mcloud_common.clock import Clock
from mcloud_common.logs import get_logger
from mcloud_common.runtime import Runtime
from recommend.repo import feedback as feedback_repo
from recommend.serving import Serving
from recommend.settings import RecommendSettings
from recommend.training import Trainer, due_tenants, fail_interrupted

log = get_logger(__name__)
SWEEP_BATCH = 1000

_HELD_CARTS = """
SELECT DISTINCT c.tenant_id, c.person FROM carts c
LEFT JOIN tenant_settings s ON s.tenant_id = c.tenant_id
WHERE c.added_at <= $1::timestamptz - make_interval(mins => coalesce((s.spec->>'intent_cart_minutes')::int, 10))
  AND c.added_at > $1::timestamptz - make_interval(hours => coalesce((s.spec->>'intent_window_hours')::int, 168))
  AND NOT EXISTS (SELECT 1 FROM intents i WHERE i.tenant_id = c.tenant_id AND i.person = c.person
                  AND i.expires_at > $1)
LIMIT $2
"""


async def sweep_intents(pool: asyncpg.Pool, serving: Serving, clock: Clock, settings: RecommendSettings) -> int:
    """Lock the intents whose cart time has now passed (so intent.locked goes out without a request)."""
    now = clock.now()
    locked = 0
    for r in await pool.fetch(_HELD_CARTS, now, SWEEP_BATCH):
        tenant, person = str(r["tenant_id"]), r["person"]
        st = await serving.states.get(tenant)
        state = await feedback_repo.state(pool, tenant, [person], st.config, now, limit=settings.history_limit)
        before = state.intent
        after = await serving.settle_intent(tenant, person, state, st, now)
        locked += after is not None and (before is None or before[0] != after[0])
    return locked


async def train_due(pool: asyncpg.Pool, trainer: Trainer, clock: Clock) -> None:
    await fail_interrupted(pool, clock.now())
    for tenant in await due_tenants(pool):
        _, task = await trainer.start(tenant)
        if task is not None:
            await task  # one tenant at a time: training takes both cores while it runs


async def purge(pool: asyncpg.Pool, clock: Clock, settings: RecommendSettings) -> None:
    cutoff = clock.now() - timedelta(days=settings.served_retention_days)
    await pool.execute("DELETE FROM served WHERE created_at < $1", cutoff)
    await pool.execute("DELETE FROM clicks WHERE clicked_at < $1", cutoff)


def install(runtime: Runtime, serving: Serving, trainer: Trainer, settings: RecommendSettings) -> None:
    pool, clock = runtime.pool, runtime.clock
    runtime.every(settings.intent_sweep_seconds, lambda: sweep_intents(pool, serving, clock, settings),
                  name="recommend-intents")
    runtime.every(settings.retrain_interval_seconds, lambda: train_due(pool, trainer, clock), name="recommend-train")
    runtime.every(3600, lambda: purge(pool, clock, settings), name="recommend-purge")
