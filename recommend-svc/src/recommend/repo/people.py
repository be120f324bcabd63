"""profile.merged folds a person's recommend data into the survivor; profile.erased deletes it."""

from __future__ import annotations

import asyncpg


async def merge(conn: asyncpg.Connection, tenant: str, from_id: str, into_id: str) -> None:
    """Interactions, carts (the earlier time in the cart wins), intent (the survivor's lock wins) and
    clicks of `from_id` become `into_id`'s."""
    await conn.execute("UPDATE interactions SET person = $3 WHERE tenant_id = $1 AND person = $2", tenant, from_id,
                       into_id)
    await conn.execute(
        """
        INSERT INTO carts (tenant_id, person, item_id, added_at)
        SELECT tenant_id, $3, item_id, added_at FROM carts WHERE tenant_id = $1 AND person = $2
        ON CONFLICT (tenant_id, person, item_id) DO UPDATE SET added_at = least(carts.added_at, EXCLUDED.added_at)
        """, tenant, from_id, into_id)
    await conn.execute("DELETE FROM carts WHERE tenant_id = $1 AND person = $2", tenant, from_id)
    await conn.execute(
        """
        INSERT INTO intents (tenant_id, person, item_id, category, score, cross_categories, locked_at, expires_at)
        SELECT tenant_id, $3, item_id, category, score, cross_categories, locked_at, expires_at FROM intents
        WHERE tenant_id = $1 AND person = $2
        ON CONFLICT (tenant_id, person) DO NOTHING
        """, tenant, from_id, into_id)
    await conn.execute("DELETE FROM intents WHERE tenant_id = $1 AND person = $2", tenant, from_id)
    await conn.execute("UPDATE clicks SET person = $3 WHERE tenant_id = $1 AND person = $2", tenant, from_id, into_id)
    await conn.execute("UPDATE served SET person = $3 WHERE tenant_id = $1 AND person = $2", tenant, from_id, into_id)
    await conn.execute("UPDATE person_aliases SET person = $3 WHERE tenant_id = $1 AND person = $2", tenant, from_id,
                       into_id)


async def erase(conn: asyncpg.Connection, tenant: str, person: str) -> None:
    """Everything recommend holds about the person: interactions, cart, intent, clicks, served lists, the
    anonymous ids known to be theirs."""
    for table in ("interactions", "carts", "intents", "clicks", "served", "person_aliases"):
        await conn.execute(f"DELETE FROM {table} WHERE tenant_id = $1 AND person = $2", tenant, person)
