"""Idempotent state-changing calls: the first response per (tenant, method, key) is stored and
returned again to a retry. A service keeps the `idempotency` table (IDEMPOTENCY_DDL) in its own database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

IDEMPOTENCY_DDL = """
    CREATE TABLE IF NOT EXISTS idempotency (
        tenant_id uuid NOT NULL,
        key text NOT NULL,
        method text NOT NULL,
        response bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, method, key)
    )
"""


async def once(conn: asyncpg.Connection, tenant_id: str, method: str, key: str, response_type: type[M],
               run: Callable[[], Awaitable[M]]) -> M:
    """`run()` the first time a key is seen, the stored response after. No key: always run.
    Two concurrent first calls with one key serialise on an advisory lock of the key."""
    if not key:
        return await run()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{tenant_id}|{method}|{key}")
        stored = await conn.fetchval(
            "SELECT response FROM idempotency WHERE tenant_id = $1 AND method = $2 AND key = $3",
            tenant_id, method, key,
        )
        if stored is not None:
            return response_type.FromString(stored)
        response = await run()
        await conn.execute(
            "INSERT INTO idempotency (tenant_id, method, key, response) VALUES ($1, $2, $3, $4)",
            tenant_id, method, key, response.SerializeToString(),
        )
        return response
