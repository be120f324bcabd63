"""Each tenant's serving state, kept in memory and refreshed in the background: the catalogue (reloaded
when its version moves), popularity and trending (recomputed when feedback arrived, at most every
`refresh_seconds`, and at least every minute for feedback other replicas took), the trained model (when
a newer one is stored) and the tenant's settings. Requests never wait for a refresh, only for the
first load of a tenant."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import numpy as np

from mcloud_common.clock import Clock
from mcloud_common.logs import get_logger
from recommend import engine
from recommend.domain import models
from recommend.domain.catalog import Catalog
from recommend.domain.config import DISMISS, Config
from recommend.repo import items as item_repo
from recommend.repo import settings as settings_repo

log = get_logger(__name__)
FULL_REFRESH_SECONDS = 60.0

_POPULARITY = """
SELECT item_id,
       count(DISTINCT person) FILTER (WHERE weight > 0) AS people,
       sum(greatest(weight, 0) * exp(-0.6931471805599453 * extract(epoch FROM ($2 - occurred_at)) / $4))
           FILTER (WHERE occurred_at > $2 - make_interval(hours => $5)) AS trend
FROM interactions
WHERE tenant_id = $1 AND occurred_at > $3 AND occurred_at <= $2 AND kind <> $6
GROUP BY item_id
"""


@dataclass
class _Slot:
    state: engine.TenantState | None = None
    model_at: float = 0.0
    refreshed: float = 0.0
    dirty: bool = False
    task: asyncio.Task | None = None
    lock: asyncio.Lock | None = None


class States:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, refresh_seconds: float) -> None:
        self._pool = pool
        self._clock = clock
        self._refresh = refresh_seconds
        self._slots: dict[str, _Slot] = {}

    async def get(self, tenant: str) -> engine.TenantState:
        slot = self._slots.setdefault(tenant, _Slot(lock=asyncio.Lock()))
        if slot.state is None:
            async with slot.lock:
                if slot.state is None:
                    await self._load(tenant, slot, full=True)
            return slot.state
        age = time.monotonic() - slot.refreshed
        if ((slot.dirty and age >= self._refresh) or age >= FULL_REFRESH_SECONDS) and (
                slot.task is None or slot.task.done()):
            slot.task = asyncio.get_running_loop().create_task(self._refresh_in_background(tenant, slot))
        return slot.state

    def touched(self, tenant: str) -> None:
        """Feedback arrived for `tenant`: popularity and trending are due for a refresh."""
        if (slot := self._slots.get(tenant)) is not None:
            slot.dirty = True

    async def reload(self, tenant: str) -> None:
        """Reload now (after a catalogue write, new settings or a model trained in this process)."""
        slot = self._slots.get(tenant)
        if slot is None or slot.state is None:
            return
        async with slot.lock:
            await self._load(tenant, slot, full=True)

    async def _refresh_in_background(self, tenant: str, slot: _Slot) -> None:
        try:
            async with slot.lock:
                await self._load(tenant, slot, full=False)
        except Exception:  # a failed refresh keeps the state serving; the next request tries again
            log.exception("tenant state refresh failed", tenant=tenant)

    async def _load(self, tenant: str, slot: _Slot, *, full: bool) -> None:
        started = time.monotonic()
        now = self._clock.now()
        old = slot.state
        version = await item_repo.version(self._pool, tenant)
        config, stamp = await settings_repo.get_stamped(self._pool, tenant)
        catalog = old.catalog if old is not None and old.catalog.version == version and not full else None
        if catalog is None:
            catalog = Catalog(version, await item_repo.load(self._pool, tenant))
        model_row = await self._pool.fetchrow(
            "SELECT run_id, extract(epoch FROM created_at) AS at FROM models WHERE tenant_id = $1", tenant)
        popular, trending = await self._popularity(tenant, catalog, config, now)
        nb = factors = None
        run = ""
        if model_row is not None:
            run = str(model_row["run_id"])
            if old is not None and not full and old.model_run == run and old.catalog is catalog:
                nb, factors = old.neighbors, old.factors
            else:
                blob = await self._pool.fetchval("SELECT blob FROM models WHERE tenant_id = $1", tenant)
                model_items, raw_nb, raw_f = await asyncio.to_thread(models.loads, blob)
                nb, factors = await asyncio.to_thread(engine.remap, model_items, raw_nb, raw_f, catalog)
        slot.state = engine.TenantState(catalog=catalog, config=config, popular=popular, trending=trending,
                                        neighbors=nb, factors=factors, model_run=run, config_stamp=stamp,
                                        popularity_stamp=(old.popularity_stamp + 1) if old is not None else 0)
        slot.refreshed = time.monotonic()
        slot.dirty = False
        log.debug("tenant state loaded", tenant=tenant, items=len(catalog), seconds=round(slot.refreshed - started, 3))

    async def _popularity(self, tenant: str, catalog: Catalog, config: Config, now) -> tuple[np.ndarray, np.ndarray]:
        n = len(catalog)
        popular = np.zeros(n, dtype=np.float32)
        trending = np.zeros(n, dtype=np.float32)
        half = config.trending_half_life_hours * 3600
        horizon = now - timedelta(days=30)
        rows = await self._pool.fetch(_POPULARITY, tenant, now, horizon, half,
                                      max(1, math.ceil(config.trending_half_life_hours * 7)), DISMISS)
        for r in rows:
            i = catalog.index.get(r["item_id"])
            if i is not None:
                popular[i] = r["people"] or 0
                trending[i] = r["trend"] or 0
        return popular, trending

