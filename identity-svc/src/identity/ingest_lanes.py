"""Group commit for ingest: the batches that arrive for one tenant while its previous transaction is
running are stored together, in one transaction, by one lane per tenant.

Why: concurrent batches of one tenant usually touch some of the same people (a batch of 500 events
touches ~500 profiles), and every per-profile write (traits, computed traits, the segment queue)
row-locks that profile until commit, so such batches run one after the other anyway, each paying
its own statements and WAL flush, and waiting on each other's locks. Combining them costs no
latency that the lock wait did not already cost, and spends the fixed cost of a transaction once
for all of them. Different tenants run in parallel; several identity processes still serialise
correctly through the database locks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from identity.domain.calls import Call
from identity.domain.settings import TenantSettings
from identity.repo import ingest as ingest_repo

MAX_COMBINED_EVENTS = 5000


@dataclass
class Outcome:
    """What happened to one call: accepted (profile set), duplicate, or rejected (code, detail)."""

    profile_id: str = ""
    duplicate: bool = False
    code: str = ""
    detail: str = ""


@dataclass
class _Job:
    settings: TenantSettings
    calls: list[Call]
    done: asyncio.Future[list[Outcome]]


@dataclass
class _Lane:
    jobs: list[_Job] = field(default_factory=list)
    running: bool = False
    task: asyncio.Task | None = None


class IngestLanes:
    def __init__(self, pool: asyncpg.Pool, shards: int, now: Callable[[], datetime]) -> None:
        self._pool = pool
        self._shards = shards
        self._now = now
        self._lanes: dict[str, _Lane] = {}

    async def store(self, tenant_id: str, settings: TenantSettings, calls: list[Call]) -> list[Outcome]:
        """Store `calls` (already validated), combined with whatever else this tenant is sending."""
        if not calls:
            return []
        lane = self._lanes.setdefault(tenant_id, _Lane())
        job = _Job(settings, calls, asyncio.get_running_loop().create_future())
        lane.jobs.append(job)
        if not lane.running:
            lane.running = True
            # its own task: a caller giving up (deadline) never interrupts a transaction of others
            lane.task = asyncio.create_task(self._drain(tenant_id, lane), name=f"ingest-lane-{tenant_id}")
        return await asyncio.shield(job.done)

    async def _drain(self, tenant_id: str, lane: _Lane) -> None:
        try:
            while lane.jobs:
                take, size = [], 0
                while lane.jobs and (not take or size + len(lane.jobs[0].calls) <= MAX_COMBINED_EVENTS):
                    job = lane.jobs.pop(0)
                    take.append(job)
                    size += len(job.calls)
                try:
                    outcomes = await self._store_combined(tenant_id, take)
                except Exception as exc:  # every caller of this transaction learns why it failed
                    for job in take:
                        if not job.done.done():
                            job.done.set_exception(exc)
                    continue
                start = 0
                for job in take:
                    if not job.done.done():
                        job.done.set_result(outcomes[start:start + len(job.calls)])
                    start += len(job.calls)
        finally:
            lane.running = False
            if not lane.jobs:
                self._lanes.pop(tenant_id, None)

    async def _store_combined(self, tenant_id: str, jobs: list[_Job]) -> list[Outcome]:
        calls = [c for job in jobs for c in job.calls]
        settings = jobs[-1].settings  # the freshest view of the tenant's settings
        now = self._now()
        async with self._pool.acquire() as conn:
            result = await ingest_repo.store(conn, tenant_id, calls, settings=settings, now=now, shards=self._shards)
        outcomes = [Outcome(duplicate=True) for _ in calls]  # what is neither stored nor rejected
        for j, profile in result.profile_ids.items():
            outcomes[j] = Outcome(profile_id=profile)
        for j, (code, detail) in result.rejected.items():
            outcomes[j] = Outcome(code=code, detail=detail)
        return outcomes
