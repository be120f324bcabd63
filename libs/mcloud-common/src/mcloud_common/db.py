"""Database access: SQLAlchemy 2 async for schema and colder CRUD, an asyncpg pool for hot paths.

Both come from the same URL. See CONVENTIONS habit 4 for why the hot paths skip the ORM.
"""

from __future__ import annotations

import re

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def asyncpg_dsn(url: str) -> str:
    """The URL as asyncpg wants it (no SQLAlchemy driver suffix)."""
    return re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql://", url)


def sqlalchemy_url(url: str) -> str:
    return re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql+asyncpg://", url)


def create_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    return create_async_engine(sqlalchemy_url(url), pool_size=pool_size, pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects via orjson, in the binary format (version byte 1 + JSON text)
    # so COPY works too; a str is taken as JSON text already serialised.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: b"\x01" + (v.encode() if isinstance(v, str) else orjson.dumps(v)),
        decoder=lambda b: orjson.loads(b[1:]),
        schema="pg_catalog",
        format="binary",
    )


async def _reset_connection(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`: one
    # more round trip per acquire. Nothing here takes session-level locks, cursors or settings (locks are
    # transaction-scoped, the relay's listener removes itself before release); only an open transaction
    # left by a cancelled caller must not leak into the next one.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10,
                      server_settings: dict[str, str] | None = None) -> asyncpg.Pool:
    """An asyncpg pool with jsonb codecs installed. No per-command timeout: it wraps every call in an
    asyncio timeout (~4% of the ingest CPU); callers bound their work with gRPC deadlines instead.
    `server_settings`: session settings of every connection (e.g. plan_cache_mode)."""
    return await asyncpg.create_pool(
        asyncpg_dsn(url), min_size=min_size, max_size=max_size, init=_init_connection, reset=_reset_connection,
        server_settings=server_settings,
    )


def _split_database(url: str) -> tuple[str, str]:
    base, _, name = asyncpg_dsn(url).rpartition("/")
    return base, name.split("?", 1)[0]


async def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it does not exist. True when it was created."""
    base, name = _split_database(url)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"unsafe database name {name!r}")
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
        return not exists
    finally:
        await conn.close()


async def drop_database(url: str) -> None:
    base, name = _split_database(url)
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` on the same server."""
    base, _ = _split_database(url)
    return f"{base}/{name}"
