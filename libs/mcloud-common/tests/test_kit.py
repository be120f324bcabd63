"""Unit tests of the small shared kit: ids, clock, settings, db helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic import ValidationError

from mcloud_common.clock import ManualClock, OffsetClock
from mcloud_common.db import asyncpg_dsn, create_pool, sqlalchemy_url
from mcloud_common.ids import new_id, parse_uuid
from mcloud_common.settings import ServiceSettings


def test_uuid7_ids_are_version_7_and_sort_by_creation():
    ids = [new_id() for _ in range(200)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == 200


def test_parse_uuid_rejects_junk():
    assert parse_uuid("nope") is None
    assert parse_uuid(str(new_id())) is not None


def test_manual_clock_moves_only_when_told():
    clock = ManualClock(datetime(2026, 11, 11, tzinfo=UTC))
    assert clock.now() == clock.now()
    clock.advance(hours=2)
    assert clock.now() == datetime(2026, 11, 11, 2, tzinfo=UTC)
    with pytest.raises(ValueError):
        ManualClock(datetime(2026, 1, 1))


def test_offset_clock_reads_its_offset_file(tmp_path):
    f = tmp_path / "offset"
    f.write_text(str(timedelta(days=3).total_seconds()))
    shifted = OffsetClock(str(f)).now() - datetime.now(UTC)
    assert timedelta(days=3) - timedelta(seconds=5) < shifted <= timedelta(days=3)


def test_settings_refuse_non_postgres_urls_with_a_clear_message():
    with pytest.raises(ValidationError, match="postgresql://"):
        ServiceSettings(database_url="mysql://x/y")
    s = ServiceSettings(database_url="postgresql://u@h/db", grpc_port=50051)
    assert s.grpc_address == "127.0.0.1:50051"


def test_url_rewrites_for_each_driver():
    assert asyncpg_dsn("postgresql+asyncpg://u@h:1/d") == "postgresql://u@h:1/d"
    assert sqlalchemy_url("postgres://u@h:1/d") == "postgresql+asyncpg://u@h:1/d"


async def test_pool_round_trips_jsonb_as_python_objects(make_database):
    url = await make_database("kit")
    pool = await create_pool(url)
    try:
        value = await pool.fetchval("SELECT $1::jsonb", {"a": [1, 2], "b": "ü"})
        assert value == {"a": [1, 2], "b": "ü"}
    finally:
        await pool.close()
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(asyncpg_dsn(url.rsplit("/", 1)[0] + "/no_such_db"))


async def test_sqlalchemy_engine_and_session_share_the_url_with_the_pool(make_database):
    from sqlalchemy import text

    from mcloud_common.db import create_engine, session_factory

    url = await make_database("kit_sa")
    engine = create_engine(url)
    try:
        sessions = session_factory(engine)
        async with sessions() as session, session.begin():
            await session.execute(text("CREATE TABLE t (id int PRIMARY KEY, name text)"))
            await session.execute(text("INSERT INTO t VALUES (1, 'rachel')"))
        async with sessions() as session:
            assert (await session.execute(text("SELECT name FROM t WHERE id = 1"))).scalar_one() == "rachel"
    finally:
        await engine.dispose()


async def test_runtime_runs_periodic_jobs_survives_their_failures_and_stops_them_on_close(make_database, redis_url):
    from sqlalchemy import text

    from mcloud_common.runtime import open_runtime
    from mcloud_common.testing.services import wait_until

    settings = ServiceSettings(database_url=await make_database("kit_rt"), redis_url=redis_url)
    runtime = await open_runtime(settings, relay=False)
    runs = []

    async def job():
        runs.append(1)
        if len(runs) == 2:
            raise RuntimeError("one bad run")

    async with runtime.sessions() as session:  # the SQLAlchemy side reaches the same database
        assert (await session.execute(text("SELECT current_database()"))).scalar_one() == settings.database_url.rsplit(
            "/", 1)[1]
    runtime.every(0.005, job, name="test-job")
    await wait_until(lambda: len(runs) >= 4, message="the job to keep running after a failure")
    await runtime.close()
    assert all(t.done() for t in runtime.tasks)
