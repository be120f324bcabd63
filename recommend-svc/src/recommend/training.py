"""Model training: a tenant's interactions of the last year (summed per person and item) over its
catalogue -> ALS item factors and item-to-item neighbours, stored as the tenant's serving model. Runs
in a worker thread so serving never waits; on demand (RetrainModel, joined when one is running) and
on a schedule for tenants with interactions newer than their model. A failed run leaves the previous
model serving. Small tenants also get offline metrics on a held-out split (precision@10 and friends)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import asyncpg
import numpy as np

from mcloud.recommend.v1 import recommend_pb2 as pb
from mcloud_common.clock import Clock
from mcloud_common.errors import NotFound
from mcloud_common.ids import new_id
from mcloud_common.logs import get_logger
from mcloud_common.timestamps import set_timestamp
from recommend.domain import models
from recommend.domain.config import DISMISS
from recommend.settings import RecommendSettings

log = get_logger(__name__)
QUEUED, RUNNING, SUCCEEDED, FAILED = (pb.TRAINING_STATUS_QUEUED, pb.TRAINING_STATUS_RUNNING,
                                      pb.TRAINING_STATUS_SUCCEEDED, pb.TRAINING_STATUS_FAILED)
EVALUATE_UP_TO = 200_000  # interactions: above this, runs skip the held-out evaluation
STALE_RUN = timedelta(hours=2)

_INTERACTIONS = """
SELECT person, item_id, sum(weight)::real AS weight FROM interactions
WHERE tenant_id = $1 AND occurred_at > $2 AND kind <> $3
GROUP BY person, item_id HAVING sum(weight) > 0
"""


def run_pb(r: asyncpg.Record) -> pb.TrainingRun:
    out = pb.TrainingRun(id=str(r["id"]), status=r["status"], item_count=r["item_count"],
                         interaction_count=r["interaction_count"], error=r["error"])
    for name in ("started_at", "finished_at"):
        if r[name] is not None:
            set_timestamp(getattr(out, name), r[name])
    metrics = r["metrics"] or {}
    out.metrics.extend(pb.Metric(name=k, value=float(v)) for k, v in sorted(metrics.items()))
    return out


class Trainer:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, settings: RecommendSettings,
                 on_model: Callable[[str], Awaitable[None]]) -> None:
        self._pool = pool
        self._clock = clock
        self._settings = settings
        self._on_model = on_model
        self._running: dict[str, tuple[uuid.UUID, asyncio.Task]] = {}

    async def start(self, tenant: str, idempotency_key: str = "") -> tuple[pb.TrainingRun, asyncio.Task | None]:
        """Start a run for `tenant`, or join the one running here (or the run that `idempotency_key` started)."""
        if idempotency_key:
            r = await self._pool.fetchrow("SELECT * FROM training_runs WHERE tenant_id = $1 AND idempotency_key = $2",
                                          tenant, idempotency_key)
            if r is not None:
                running = self._running.get(tenant)
                return run_pb(r), running[1] if running and running[0] == r["id"] else None
        if (running := self._running.get(tenant)) is not None and not running[1].done():
            return await self.get(tenant, str(running[0])), running[1]
        run_id = new_id()
        now = self._clock.now()
        r = await self._pool.fetchrow(
            "INSERT INTO training_runs (tenant_id, id, status, idempotency_key, created_at) "
            "VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING *",
            tenant, run_id, QUEUED, idempotency_key or None, now)
        if r is None:  # the same key, started a moment ago by a concurrent call
            return await self.start(tenant, idempotency_key)
        task = asyncio.get_running_loop().create_task(self._run(tenant, run_id), name=f"train-{tenant}")
        self._running[tenant] = (run_id, task)
        return run_pb(r), task

    async def get(self, tenant: str, run_id: str = "") -> pb.TrainingRun:
        if run_id:
            r = await self._pool.fetchrow("SELECT * FROM training_runs WHERE tenant_id = $1 AND id = $2",
                                          tenant, run_id)
        else:
            r = await self._pool.fetchrow(
                "SELECT * FROM training_runs WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 1", tenant)
        if r is None:
            raise NotFound("no such training run", code="run_not_found")
        return run_pb(r)

    async def _run(self, tenant: str, run_id: uuid.UUID) -> None:
        started = self._clock.now()
        t0 = time.monotonic()
        await self._pool.execute(
            "UPDATE training_runs SET status = $3, started_at = $4 WHERE tenant_id = $1 AND id = $2",
            tenant, run_id, RUNNING, started)
        try:
            items = [r["id"] for r in await self._pool.fetch(
                "SELECT id FROM items WHERE tenant_id = $1 ORDER BY id", tenant)]
            rows = await self._pool.fetch(_INTERACTIONS, tenant, started - timedelta(days=365), DISMISS)
            blob, metrics, matrix_nnz = await asyncio.to_thread(self._fit, items, rows)
            metrics["seconds"] = round(time.monotonic() - t0, 3)
            finished = self._clock.now()
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO models (tenant_id, run_id, blob, trained_through, created_at) "
                    "VALUES ($1, $2, $3, $4, $5) "
                    "ON CONFLICT (tenant_id) DO UPDATE SET run_id = EXCLUDED.run_id, blob = EXCLUDED.blob, "
                    "trained_through = EXCLUDED.trained_through, created_at = EXCLUDED.created_at",
                    tenant, run_id, blob, started, finished)
                await conn.execute(
                    "UPDATE training_runs SET status = $3, finished_at = $4, item_count = $5, interaction_count = $6, "
                    "metrics = $7 WHERE tenant_id = $1 AND id = $2",
                    tenant, run_id, SUCCEEDED, finished, len(items), matrix_nnz, metrics)
            log.info("model trained", tenant=tenant, items=len(items), interactions=matrix_nnz, **metrics)
            await self._on_model(tenant)
        except Exception as exc:
            log.exception("training failed; the previous model keeps serving", tenant=tenant)
            await self._pool.execute(
                "UPDATE training_runs SET status = $3, finished_at = $4, error = $5 WHERE tenant_id = $1 AND id = $2",
                tenant, run_id, FAILED, self._clock.now(), f"{type(exc).__name__}: {exc}"[:500])

    def _fit(self, items: list[str], rows: list[asyncpg.Record]) -> tuple[bytes, dict, int]:
        s = self._settings
        matrix = models.Matrix.build([r["person"] for r in rows], [r["item_id"] for r in rows],
                                     [r["weight"] for r in rows], item_ids=items)
        csr = matrix.csr
        metrics: dict[str, float] = {"people": float(csr.shape[0])}
        if csr.nnz and csr.nnz <= EVALUATE_UP_TO:
            metrics.update(_holdout(csr, s))
        factors = models.train_als(csr, factors=s.als_factors, regularization=s.als_regularization,
                                   alpha=s.als_alpha, iterations=s.als_iterations)
        nb = models.item_neighbors(csr, k=s.neighbors)
        metrics["catalog_coverage"] = round(float((np.asarray((csr > 0).sum(axis=0)).ravel() > 0).mean()), 4) \
            if csr.shape[1] else 0.0
        return models.dumps(matrix.items, nb, factors), metrics, int(csr.nnz)


def _holdout(csr, s: RecommendSettings, k: int = 10, seed: int = 42) -> dict[str, float]:
    """precision@k / recall@k of ALS and of popularity on a 25% per-person held-out split."""
    rng = np.random.default_rng(seed)
    coo = csr.tocoo()
    test = np.zeros(coo.nnz, dtype=bool)
    for_row = np.split(np.arange(coo.nnz)[np.argsort(coo.row, kind="stable")],
                       np.cumsum(np.bincount(coo.row, minlength=csr.shape[0]))[:-1])
    for cells in for_row:
        if len(cells) >= 2:
            pick = rng.choice(cells, size=max(1, len(cells) // 4), replace=False)
            test[pick] = True
    if not test.any():
        return {}
    import scipy.sparse as sp

    train = sp.csr_matrix((coo.data[~test], (coo.row[~test], coo.col[~test])), shape=csr.shape)
    held = sp.csr_matrix((np.ones(test.sum()), (coo.row[test], coo.col[test])), shape=csr.shape)
    factors = models.train_als(train, factors=s.als_factors, regularization=s.als_regularization, alpha=s.als_alpha,
                               iterations=s.als_iterations)
    popular = models.popularity(train)
    out: dict[str, list[float]] = {"precision@10": [], "recall@10": [], "popular_precision@10": []}
    users = np.flatnonzero(np.diff(held.indptr) > 0)
    for u in users[:2000]:
        seen = train.indices[train.indptr[u]:train.indptr[u + 1]]
        truth = set(held.indices[held.indptr[u]:held.indptr[u + 1]].tolist())
        top = models.top_k(factors.user_factors[u] @ factors.item_factors.T, k, exclude=seen)
        hits = len(truth.intersection(top.tolist()))
        out["precision@10"].append(hits / k)
        out["recall@10"].append(hits / len(truth))
        top_pop = models.top_k(popular, k, exclude=seen)
        out["popular_precision@10"].append(len(truth.intersection(top_pop.tolist())) / k)
    return {name: round(float(np.mean(v)), 4) for name, v in out.items() if v}


async def fail_interrupted(pool: asyncpg.Pool, now: datetime) -> None:
    """Runs left RUNNING or QUEUED by a process that died long ago: failed, so a new one can start."""
    await pool.execute(
        "UPDATE training_runs SET status = $1, finished_at = $2, error = 'interrupted' "
        "WHERE status IN ($3, $4) AND created_at < $2::timestamptz - $5::interval",
        FAILED, now, QUEUED, RUNNING, STALE_RUN)


async def due_tenants(pool: asyncpg.Pool) -> list[str]:
    """Tenants with interactions newer than their model (or none yet)."""
    rows = await pool.fetch(
        """
        SELECT t.tenant_id FROM (SELECT DISTINCT tenant_id FROM catalog_versions) t
        LEFT JOIN models m ON m.tenant_id = t.tenant_id
        WHERE EXISTS (SELECT 1 FROM interactions i WHERE i.tenant_id = t.tenant_id
                      AND i.occurred_at > coalesce(m.trained_through, '-infinity'))
        """)
    return [str(r["tenant_id"]) for r in rows]
