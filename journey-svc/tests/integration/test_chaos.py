"""The chaos test of the issue: a journey for 10,000 people (award points -> wait 1 hour -> award
points -> exit) run by workers that keep dying, right after performing an effect and before saving,
and being replaced. Every person gets each effect exactly once (loyalty's ledger says so) and ends in
exactly one terminal state."""

from __future__ import annotations

import asyncio
import random
import uuid

import orjson
import pytest

from journey.background.worker import Effects, Worker
from loyalty.app import MIGRATIONS as LOYALTY_MIGRATIONS
from loyalty.app import build as build_loyalty
from loyalty.settings import LoyaltySettings
from loyalty.testing import sports_program
from mcloud.journey.v1 import journey_pb2 as pb
from mcloud.loyalty.v1 import loyalty_pb2 as lpb
from mcloud.loyalty.v1 import loyalty_pb2_grpc
from mcloud_common.db import asyncpg_dsn, create_pool
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.testing.services import running_service

PEOPLE = 10_000


class Died(Exception):
    """A worker process going away mid-run."""


class DyingEffects(Effects):
    """Performs effects, and every so often dies right after one (before the worker saves)."""

    def __init__(self, *args, rng: random.Random, every: int) -> None:
        super().__init__(*args)
        self._rng, self._every, self.performed, self.deaths = rng, every, 0, 0

    async def perform(self, tenant, row, effect, context=None) -> None:
        await super().perform(tenant, row, effect, context)
        self.performed += 1
        if self._rng.randrange(self._every) == 0:
            self.deaths += 1
            raise Died


@pytest.fixture
async def loyalty(make_database, redis_url):
    db = await make_database("loyalty", migrations=LOYALTY_MIGRATIONS)
    settings = LoyaltySettings(database_url=db, redis_url=redis_url, grpc_port=0)
    async with running_service(build_loyalty, settings, jobs=False) as (service, channel):
        yield loyalty_pb2_grpc.LoyaltyServiceStub(channel), service.port, db


async def test_ten_thousand_people_through_dying_workers_each_effect_exactly_once(api, journey_db, clock, loyalty):
    stub, port, loyalty_db = loyalty
    md = tenant_metadata(api.tenant)
    program = (await stub.UpsertProgram(lpb.UpsertProgramRequest(program=sports_program(pending_days=0)),
                                        metadata=md)).program
    definition = {"entry": {"type": "api"}, "start": "first",
                  "steps": [{"id": "first", "type": "award_points", "points": 10, "program_id": program.id,
                             "reason": "journey", "next": "wait"},
                            {"id": "wait", "type": "wait", "duration": "PT1H", "next": "second"},
                            {"id": "second", "type": "award_points", "points": 5, "program_id": program.id,
                             "reason": "journey", "next": "done"},
                            {"id": "done", "type": "exit"}]}
    saved = await api.call("SaveJourneyDraft", pb.SaveJourneyDraftRequest(
        name="Chaos", definition_json=orjson.dumps(definition).decode()))
    jid = saved.journey.id
    await api.call("PublishJourney", pb.PublishJourneyRequest(journey_id=jid))
    people = [str(uuid.uuid4()) for _ in range(PEOPLE)]
    gate = asyncio.Semaphore(64)

    async def join(profile: str) -> None:
        async with gate:
            await stub.EnrollMember(lpb.EnrollMemberRequest(program_id=program.id, profile_id=profile), metadata=md)
            await api.call("EnrollProfile", pb.EnrollProfileRequest(journey_id=jid, profile_id=profile))

    await asyncio.gather(*(join(p) for p in people))

    pool = await create_pool(journey_db)
    rng = random.Random(11)
    effects = DyingEffects("127.0.0.1:1", f"127.0.0.1:{port}", "127.0.0.1:1", rng=rng, every=700)
    try:
        async def run_workers() -> None:
            """Three workers until nothing is due; each death is replaced by a new worker after the
            dead one's lease ran out."""
            while True:
                workers = [Worker(pool, clock, effects, batch=400, lease_seconds=30) for _ in range(3)]
                results = await asyncio.gather(*(w.run_once() for w in workers), return_exceptions=True)
                if any(isinstance(r, Died) for r in results):
                    clock.advance(seconds=31)  # the dead worker's claims come due again
                    continue
                errors = [r for r in results if isinstance(r, BaseException)]
                assert not errors, errors
                if not any(results):
                    return

        await run_workers()
        clock.advance(hours=1, seconds=1)
        await run_workers()
    finally:
        await effects.close()
        await pool.close()
    assert effects.deaths >= 5  # it really was chaotic

    import asyncpg
    jdb = await asyncpg.connect(asyncpg_dsn(journey_db))
    ldb = await asyncpg.connect(asyncpg_dsn(loyalty_db))
    try:
        states = await jdb.fetch("SELECT status, count(*) AS n FROM enrollments GROUP BY status")
        assert {r["status"]: r["n"] for r in states} == {"completed": PEOPLE}
        ended_twice = await jdb.fetchval("SELECT count(*) FROM (SELECT enrollment_id FROM step_log "
                                         "WHERE step_type = 'exit' GROUP BY 1 HAVING count(*) > 1) x")
        assert ended_twice == 0
        per_person = await ldb.fetch("SELECT sum(points) AS total, count(*) AS entries FROM ledger_entries "
                                     "WHERE kind = 'earn' GROUP BY profile_id")
        assert len(per_person) == PEOPLE
        assert {(r["total"], r["entries"]) for r in per_person} == {(15, 2)}  # each effect exactly once
    finally:
        await jdb.close()
        await ldb.close()
