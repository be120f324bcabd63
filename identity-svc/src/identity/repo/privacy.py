"""Erasure, export, and suppression of erased identifiers."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import asyncpg

Key = tuple[str, str]


def identifier_digest(tenant_id: str, key: Key) -> bytes:
    """A one-way digest of an erased identifier (the value itself is not kept)."""
    return hashlib.sha256("\x1f".join((tenant_id, key[0], key[1])).encode()).digest()


async def suppressed(conn: asyncpg.Connection, tenant_id: str, keys: Iterable[Key]) -> set[Key]:
    """Which of `keys` belonged to an erased person (events carrying them are refused)."""
    by_digest = {identifier_digest(tenant_id, k): k for k in keys}
    if not by_digest:
        return set()
    rows = await conn.fetch(
        "SELECT digest FROM erased_identifiers WHERE tenant_id = $1 AND digest = ANY($2::bytea[])",
        tenant_id, list(by_digest),
    )
    return {by_digest[r["digest"]] for r in rows}
