"""Each tenant's serving state, kept in memory and refreshed in the background: the catalogue (reloaded
when its version moves), the trained model (when a newer one is stored), the tenant's settings (cheap
checks every `refresh_seconds`), and popularity and trending: recomputed from the log every
`popularity_seconds`, and in between fed in memory by the feedback this process records. Requests never
wait for a refresh, only for the first load of a tenant."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import numpy as np

from mcloud_common.clock import Clock
from mcloud_common.heap import freeze_long_lived
from mcloud_common.logs import get_logger
from recommend import engine
from recommend.domain import models
from recommend.domain.catalog import Catalog
from recommend.domain.config import DISMISS, Config
from recommend.repo import items as item_repo
from recommend.repo import settings as settings_repo

log = get_logger(__name__)

# popular: positive feedback weight over 30 days; trending: the same, halving every half-life (a hash
# aggregate over the tenant's month of log: no sort, no per-person distinct)
_POPULARITY = """
SELECT item_id, sum(greatest(weight, 0))::real AS popular,
       sum(greatest(weight, 0) * exp(-0.6931471805599453 * extract(epoch FROM ($2 - occurred_at)) / $4))
           FILTER (WHERE occurred_at > $2 - make_interval(hours => $5))::real AS trend
FROM interactions
WHERE tenant_id = $1 AND occurred_at > $3 AND occurred_at <= $2 AND kind <> $6
GROUP BY item_id
"""


@dataclass
class _Slot:
    state: engine.TenantState | None = None
    checked: float = 0.0  # monotonic time of the last look at versions
    popularity_at: float = 0.0  # monotonic time popularity was last recomputed from the log
    task: asyncio.Task | None = None
    lock: asyncio.Lock | None = None


class States:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, refresh_seconds: float, popularity_seconds: float) -> None:
        self._pool = pool
        self._clock = clock
        self._refresh = refresh_seconds
        self._popularity_every = popularity_seconds
        self._slots: dict[str, _Slot] = {}

    async def get(self, tenant: str) -> engine.TenantState:
        slot = self._slots.setdefault(tenant, _Slot(lock=asyncio.Lock()))
        if slot.state is None:
            async with slot.lock:
                if slot.state is None:
                    await self._load(tenant, slot, full=True)
            return slot.state
        if time.monotonic() - slot.checked >= self._refresh and (slot.task is None or slot.task.done()):
            slot.checked = time.monotonic()
            slot.task = asyncio.get_running_loop().create_task(self._refresh_in_background(tenant, slot))
        return slot.state

    def feed(self, tenant: str, rows) -> None:
        """Feedback this process recorded: counted into popularity and trending at once (the next
        recomputation from the log replaces these counts)."""
        slot = self._slots.get(tenant)
        if slot is None or slot.state is None:
            return
        st = slot.state
        for r in rows:
            if r.weight > 0 and (i := st.catalog.index.get(r.item_id)) is not None:
                st.popular[i] += r.weight
                st.trending[i] += r.weight
                st.fed_at = time.monotonic()

    def touched(self, tenant: str) -> None:
        """A merge or an erasure changed the log: popularity is recomputed at the next look."""
        if (slot := self._slots.get(tenant)) is not None:
            slot.popularity_at = 0.0

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
        """(Re)build what changed; `full` rebuilds everything."""
        started = time.monotonic()
        now = self._clock.now()
        old = None if full else slot.state
        version = await item_repo.version(self._pool, tenant)
        config, stamp = await settings_repo.get_stamped(self._pool, tenant)
        model_row = await self._pool.fetchrow("SELECT run_id FROM models WHERE tenant_id = $1", tenant)
        run = str(model_row["run_id"]) if model_row is not None else ""
        same_catalog = old is not None and old.catalog.version == version
        due = started - slot.popularity_at >= self._popularity_every
        if (old is not None and same_catalog and old.model_run == run and old.config_stamp == stamp and not due):
            return
        catalog = old.catalog if same_catalog else Catalog(version, await item_repo.load(self._pool, tenant))
        if old is not None and same_catalog and not due and old.config == config:
            popular, trending, pop_stamp = old.popular, old.trending, old.popularity_stamp
        else:
            popular, trending = await self._popularity(tenant, catalog, config, now)
            pop_stamp = (slot.state.popularity_stamp + 1) if slot.state is not None else 0
            slot.popularity_at = started
        nb = factors = None
        if run:
            if old is not None and same_catalog and old.model_run == run:
                nb, factors = old.neighbors, old.factors
            else:
                blob = await self._pool.fetchval("SELECT blob FROM models WHERE tenant_id = $1", tenant)
                model_items, raw_nb, raw_f = await asyncio.to_thread(models.loads, blob)
                nb, factors = await asyncio.to_thread(engine.remap, model_items, raw_nb, raw_f, catalog)
        state = engine.TenantState(catalog=catalog, config=config, popular=popular, trending=trending,
                                   neighbors=nb, factors=factors, model_run=run, config_stamp=stamp,
                                   popularity_stamp=pop_stamp)
        if old is not None and same_catalog and old.model_run == run and old.similar is not None:
            state.similar = old.similar
        else:  # about a second at 20k items: off the event loop
            await asyncio.to_thread(state.similar_items)
        slot.state = state
        slot.checked = time.monotonic()
        freeze_long_lived()  # the catalogue's objects live until the next load: full collections skip them
        log.debug("tenant state loaded", tenant=tenant, items=len(catalog), seconds=round(slot.checked - started, 3))

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
                popular[i] = r["popular"] or 0
                trending[i] = r["trend"] or 0
        return popular, trending

