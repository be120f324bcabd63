"""Fixtures for the event bus tests: a fresh database with the bus tables, unique producer names,
an event factory and `wait_until` (poll a condition against a deadline, never a bare sleep)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from mcloud.events.v1 import event_pb2
from mcloud_common.bus import BUS_DDL
from mcloud_common.db import create_pool
from mcloud_common.ids import new_id_str
from mcloud_common.testing.services import wait_until as shared_wait_until

# the handler under test writes its effect here; no unique key, so a double apply would show
EFFECTS_DDL = "CREATE TABLE effects (id bigserial PRIMARY KEY, event_id uuid NOT NULL, profile_id text)"

WaitUntil = Callable[..., Awaitable[None]]


@pytest.fixture
def wait_until() -> WaitUntil:
    """`await wait_until(predicate, timeout=5)`: predicate may be sync or async."""
    return shared_wait_until


@pytest.fixture
async def bus_pool(make_database) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool on a new database holding the bus tables and an `effects` table."""
    pool = await create_pool(await make_database("bus"), min_size=1, max_size=8)
    async with pool.acquire() as conn:
        for sql in BUS_DDL:
            await conn.execute(sql)
        await conn.execute(EFFECTS_DDL)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def producer() -> str:
    """A producer name no other test uses, so every test has its own streams."""
    return f"p{uuid.uuid4().hex[:10]}"


def _make_event(
    profile_id: str = "", *, type: str = "track", tenant_id: str = "t1", anonymous_id: str = "", **fields
) -> event_pb2.Event:
    return event_pb2.Event(
        id=new_id_str(), tenant_id=tenant_id, type=type, profile_id=profile_id,
        anonymous_id=anonymous_id, **fields,
    )


@pytest.fixture
def make_event() -> Callable[..., event_pb2.Event]:
    """`make_event(profile_id, type=..., tenant_id=..., anonymous_id=...)` with a fresh UUIDv7 id."""
    return _make_event


@pytest.fixture
def recording_handler():
    """A handler that inserts one `effects` row per call and remembers the event ids it saw."""

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[str] = []

        async def __call__(self, event: event_pb2.Event, conn: asyncpg.Connection) -> None:
            self.calls.append(event.id)
            await conn.execute(
                "INSERT INTO effects (event_id, profile_id) VALUES ($1, $2)",
                uuid.UUID(event.id), event.profile_id,
            )

    return Recorder()
