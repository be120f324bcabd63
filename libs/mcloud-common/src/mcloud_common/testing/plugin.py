"""pytest plugin (loaded with `-p mcloud_common.testing.plugin`): real PostgreSQL and Valkey,
started once per test session, embedded unless DATABASE_URL / REDIS_URL point at servers."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from mcloud_common.db import ensure_database, with_database
from mcloud_common.embedded import EmbeddedPostgres, EmbeddedValkey, free_port
from mcloud_common.migrations import upgrade_async


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of the `postgres` database on a real server for this test session."""
    if os.environ.get("DATABASE_URL"):
        yield with_database(os.environ["DATABASE_URL"], "postgres")
        return
    root = Path(tempfile.mkdtemp(prefix="mcloud-test-pg-"))
    server = EmbeddedPostgres(root / "pg", free_port())
    server.start(fast=True)
    try:
        yield server.url()
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def valkey_server() -> EmbeddedValkey | None:
    if os.environ.get("REDIS_URL"):
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="mcloud-test-valkey-"))
    server = EmbeddedValkey(root, free_port())
    server.start(persist=False)
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def redis_url(valkey_server: EmbeddedValkey | None) -> str:
    return os.environ["REDIS_URL"] if valkey_server is None else valkey_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


MakeDatabase = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
def make_database(pg_url: str) -> MakeDatabase:
    """Factory: `await make_database(prefix, migrations=Path|None)` -> URL of a new, empty (or
    migrated) database. Every test that needs isolation gets its own."""

    async def make(prefix: str = "t", migrations: Path | None = None) -> str:
        url = with_database(pg_url, f"{prefix}_{uuid.uuid4().hex[:10]}")
        await ensure_database(url)
        if migrations is not None:
            await upgrade_async(migrations, url)
        return url

    return make
